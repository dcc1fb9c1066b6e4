using System.Diagnostics;
using static MiniQueue.Benchmarks.LoadSupport;

namespace MiniQueue.Benchmarks;

/// <summary>
/// How long reopening a data directory takes after N messages were published and ACKed, for N = 1,000 and N = 10 million
/// (--counts to change): recovery replays the live tail of the log, not its history.
/// </summary>
internal static class RecoveryTime
{
    public static async Task<int> RunAsync(string[] args)
    {
        int[] counts = Option(args, "counts") is { } list ? [.. list.Split(',').Select(int.Parse)] : [1_000, 10_000_000];
        var payload = new byte[100];
        Console.WriteLine("| published and ACKed | time to publish+ACK | log written | data directory after | reopen time | records replayed |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|");
        foreach (var count in counts)
        {
            var directory = NewDirectory(args, "recovery");
            try
            {
                var options = new MiniQueueOptions { DataDirectory = directory, CommitMode = MiniQueueCommitMode.Interval };
                var fill = Stopwatch.StartNew();
                long written;
                await using (var queue = await MiniQueueEngine.OpenAsync(options))
                {
                    // Four publisher+consumer pairs on four topics keep the queue short, as a steady load does.
                    const int Pairs = 4;
                    await Task.WhenAll(Enumerable.Range(0, Pairs).Select(pair => Task.Run(async () =>
                    {
                        var topic = $"steady-{pair}";
                        await using var consumer = queue.Subscribe(topic);
                        for (var i = pair; i < count; i += Pairs)
                        {
                            await queue.PublishAsync(topic, payload);
                            await consumer.ReceiveAsync();
                            await consumer.AckAsync();

                            // In Interval mode all of this completes synchronously; a server's requests would yield,
                            // so let the engine's background compaction have a thread now and then.
                            if (i % 1024 == 0)
                            {
                                await Task.Yield();
                            }
                        }
                    })));
                    written = queue.Store.TailAddress;
                }

                fill.Stop();
                var disk = new DirectoryInfo(directory).EnumerateFiles("*", SearchOption.AllDirectories).Sum(file => file.Length);
                var reopen = Stopwatch.StartNew();
                await using var reopened = await MiniQueueEngine.OpenAsync(options);
                reopen.Stop();
                Console.WriteLine(
                    $"| {Format(count)} | {fill.Elapsed.TotalSeconds:N1} s | {Format(written / 1024.0 / 1024)} MiB | {Format2(disk / 1024.0 / 1024)} MiB | " +
                    $"{reopen.Elapsed.TotalMilliseconds:N0} ms | {Format(reopened.RecoveredRecords)} |");
            }
            finally
            {
                Delete(directory);
            }
        }

        return 0;
    }
}
