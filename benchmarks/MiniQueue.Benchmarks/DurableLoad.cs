using System.Threading.Channels;
using FASTER.core;
using static MiniQueue.Benchmarks.LoadSupport;

namespace MiniQueue.Benchmarks;

/// <summary>
/// Durable publish throughput and latency with 1, 16, 64 and 256 concurrent publishers, each against a baseline measured
/// in the same run on the same disk: a bare FasterLog with the engine's settings and commit policy (one committer, one
/// commit in flight, every writer waits for the commit that covers its entry). Then consume+ACK throughput.
/// </summary>
internal static class DurableLoad
{
    private const string Topic = "bench";

    public static async Task<int> RunAsync(string[] args)
    {
        var duration = TimeSpan.FromSeconds(Option(args, "seconds", 5));
        var payload = new byte[Option(args, "payload", 100)];
        Random.Shared.NextBytes(payload);
        int[] writerCounts = Option(args, "writers") is { } list ? [.. list.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse)] : [1, 16, 64, 256];
        int[] consumerCounts = Option(args, "consumers") is { } counts ? [.. counts.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse)] : [1, 16];

        Console.WriteLine($"Durable publish, {payload.Length}-byte messages, {duration.TotalSeconds} s per run (after 1 s of warm-up), data in {Option(args, "dir") ?? Path.GetTempPath()}");
        Console.WriteLine();
        Console.WriteLine("| publishers | bare FasterLog msg/s | p50 ms | p99 ms | MiniQueue msg/s | p50 ms | p99 ms | MiniQueue / bare |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var writers in writerCounts)
        {
            var bare = await BareAsync(args, writers, duration, payload);
            var engine = await EngineAsync(args, writers, duration, payload);
            Console.WriteLine(
                $"| {writers} | {Format(bare.PerSecond)} | {Format2(bare.P50Milliseconds)} | {Format2(bare.P99Milliseconds)} | " +
                $"{Format(engine.PerSecond)} | {Format2(engine.P50Milliseconds)} | {Format2(engine.P99Milliseconds)} | {Format2(engine.PerSecond / bare.PerSecond)} |");
        }

        Console.WriteLine();
        Console.WriteLine($"Consume+ACK: the time to drain 1,000,000 durably published messages (the first {new MiniQueueOptions().BodyCacheBytes / (1024 * 1024)} MiB of bodies from memory, the rest read back from the log).");
        Console.WriteLine();
        Console.WriteLine("| consumers | consume+ACK msg/s | p50 ms | p99 ms |");
        Console.WriteLine("|---:|---:|---:|---:|");
        foreach (var consumers in consumerCounts)
        {
            var result = await ConsumeAsync(args, consumers, duration, payload);
            Console.WriteLine($"| {consumers} | {Format(result.PerSecond)} | {Format2(result.P50Milliseconds)} | {Format2(result.P99Milliseconds)} |");
        }

        return 0;
    }

    private static async Task<LoadResult> EngineAsync(string[] args, int writers, TimeSpan duration, byte[] payload)
    {
        var directory = NewDirectory(args, "engine");
        try
        {
            await using var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { DataDirectory = directory });
            return await LoadResult.MeasureAsync(writers, duration, (_, _) => queue.PublishAsync(Topic, payload, CancellationToken.None).AsTask());
        }
        finally
        {
            Delete(directory);
        }
    }

    private static async Task<LoadResult> ConsumeAsync(string[] args, int consumers, TimeSpan duration, byte[] payload)
    {
        var directory = NewDirectory(args, "consume");
        try
        {
            await using var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { DataDirectory = directory });

            // Enough messages that the consumers never run dry, published durably by 64 publishers.
            const int Prefill = 1_000_000;
            await Task.WhenAll(Enumerable.Range(0, 64).Select(_ => Task.Run(async () =>
            {
                for (var i = 0; i < Prefill / 64; i++)
                {
                    await queue.PublishAsync(Topic, payload);
                }
            })));

            var subscriptions = Enumerable.Range(0, consumers).Select(_ => queue.Subscribe(Topic)).ToArray();
            var result = await LoadResult.MeasureCountAsync(consumers, Prefill, async (consumer, done) =>
            {
                await subscriptions[consumer].ReceiveAsync(done);
                await subscriptions[consumer].AckAsync(done);
            });
            foreach (var subscription in subscriptions)
            {
                await subscription.DisposeAsync();
            }

            return result;
        }
        finally
        {
            Delete(directory);
        }
    }

    /// <summary>The baseline: FasterLog with the engine's settings, committed the way the engine commits.</summary>
    private static async Task<LoadResult> BareAsync(string[] args, int writers, TimeSpan duration, byte[] payload)
    {
        var directory = NewDirectory(args, "bare");
        var device = Devices.CreateLogDevice(Path.Combine(directory, "wal.log"));
        var commitManager = new DeviceLogCommitCheckpointManager(
            new LocalStorageNamedDeviceFactory(), new DefaultCheckpointNamingScheme(directory), removeOutdated: true, fastCommitThrottleFreq: 1000);
        var log = new FasterLog(new FasterLogSettings
        {
            LogDevice = device,
            LogCommitDir = directory,
            LogCommitManager = commitManager,
            PageSizeBits = 23,
            SegmentSizeBits = 24,
            MemorySizeBits = 25,
            LogChecksum = LogChecksumType.PerEntry,
            FastCommitMode = true,
            TryRecoverLatest = false,
        });
        log.Recover();

        // The same record size as the engine's publish record (kind, id, topic length, topic, payload).
        var record = new byte[1 + 8 + 1 + Topic.Length + payload.Length];
        payload.CopyTo(record, record.Length - payload.Length);
        var requests = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });
        var committer = Task.Run(async () =>
        {
            while (await requests.Reader.WaitToReadAsync())
            {
                requests.Reader.TryRead(out _);
                await log.CommitAsync();
            }
        });

        try
        {
            return await LoadResult.MeasureAsync(writers, duration, async (_, _) =>
            {
                var address = log.Enqueue(record);
                requests.Writer.TryWrite(true);
                await log.WaitForCommitAsync(address + 1, token: CancellationToken.None);
            });
        }
        finally
        {
            requests.Writer.Complete();
            await committer;
            log.Dispose();
            commitManager.Dispose();
            device.Dispose();
            Delete(directory);
        }
    }
}
