using System.Diagnostics;
using static MiniQueue.Benchmarks.LoadSupport;

namespace MiniQueue.Benchmarks;

/// <summary>
/// The memory a durable engine needs for 1 million queued 100-byte messages (--count to change), with the body cache
/// off (only the index in memory) and at its default (<see cref="MiniQueueOptions.BodyCacheBytes"/>); with --delayed,
/// for as many published with a delay of an hour (cache off), which wait as delayed messages. A row's "before" carries
/// what the rows before it left in the process, so --delayed runs alone.
/// </summary>
internal static class QueuedMemory
{
    public static async Task<int> RunAsync(string[] args)
    {
        var count = Option(args, "count", 1_000_000);
        var payload = new byte[100];
        Console.WriteLine($"| body cache | queued messages | RSS before | RSS after | RSS per message | managed heap per message |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|");
        var rows = Array.IndexOf(args, "--delayed") >= 0 ? new[] { (0L, true) } : [(0L, false), (new MiniQueueOptions().BodyCacheBytes, false)];
        foreach (var (cache, delayed) in rows)
        {
            var publish = delayed ? new PublishOptions { Delay = TimeSpan.FromHours(1) } : null;
            var directory = NewDirectory(args, "memory");
            try
            {
                var options = new MiniQueueOptions { DataDirectory = directory, CommitMode = MiniQueueCommitMode.Interval, BodyCacheBytes = cache };
                await using var queue = await MiniQueueEngine.OpenAsync(options);
                await queue.PublishAsync("warm-up", payload);
                var (rssBefore, heapBefore) = Measure();
                await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
                {
                    for (var i = 0; i < count / 4; i++)
                    {
                        await queue.PublishAsync("queued", payload, publish);
                    }
                })));
                var (rssAfter, heapAfter) = Measure();
                Console.WriteLine(
                    $"| {Format(cache / 1024.0 / 1024)} MiB | {Format(delayed ? queue.GetStats("queued").Delayed : queue.GetStats("queued").Ready)}{(delayed ? " delayed" : "")} | {Format(rssBefore / 1048576.0)} MiB | {Format(rssAfter / 1048576.0)} MiB | " +
                    $"{Format((rssAfter - rssBefore) / (double)count)} B | {Format((heapAfter - heapBefore) / (double)count)} B |");
            }
            finally
            {
                Delete(directory);
            }
        }

        return 0;
    }

    private static (long Rss, long Heap) Measure()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        using var process = Process.GetCurrentProcess();
        return (process.WorkingSet64, GC.GetTotalMemory(forceFullCollection: true));
    }
}
