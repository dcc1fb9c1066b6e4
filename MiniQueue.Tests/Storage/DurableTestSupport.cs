using FASTER.core;
using Microsoft.Extensions.Logging.Abstractions;
using MiniQueue.Storage;

namespace MiniQueue.Tests.Storage;

/// <summary>A data directory in the temp folder, deleted when disposed.</summary>
internal sealed class TempDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("miniqueue-test-").FullName;

    public long DiskBytes() => new DirectoryInfo(Path).EnumerateFiles("*", SearchOption.AllDirectories).Sum(file => file.Length);

    public string[] LogFiles() => [.. Directory.EnumerateFiles(Path, "wal.log.*").Select(System.IO.Path.GetFileName).Order()!];

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

internal static class DurableTestSupport
{
    /// <summary>Small pages and segments, so that a test fills segments with little data.</summary>
    public static MiniQueueOptions SmallLog(string directory, TimeProvider? time = null) => new()
    {
        DataDirectory = directory,
        TimeProvider = time ?? TestSupport.NewClock(),
        LogPageBytes = 64 * 1024,
        LogSegmentBytes = 256 * 1024,
        LogMemoryBytes = 256 * 1024,
        MaxMessageBytes = 32 * 1024,
        DiskReserveBytes = 4 * 64 * 1024,
    };

    public static async Task<MiniQueueEngine> OpenAsync(MiniQueueOptions options, Func<string, IDevice>? createDevice = null, DataFiles? files = null) =>
        await MiniQueueEngine.OpenAsync(options, FasterLogStore.Open(options, NullLogger.Instance, createDevice: createDevice, files: files), default);

    /// <summary>Publishes until it works (the store may be coming back from a fault); false if it never did within the bound.</summary>
    public static async Task<bool> PublishEventuallyAsync(MiniQueueEngine queue, string topic, string text)
    {
        var deadline = DateTime.UtcNow + TestSupport.Bound;
        while (true)
        {
            try
            {
                await queue.PublishAsync(topic, text);
                return true;
            }
            catch (MiniQueueStoreException)
            {
                if (DateTime.UtcNow > deadline)
                {
                    return false;
                }

                await Task.Delay(50);
            }
        }
    }

    /// <summary>Polls a condition until it holds or the bound passes; returns whether it held.</summary>
    public static async Task<bool> EventuallyAsync(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + TestSupport.Bound;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            await Task.Delay(20);
        }

        return true;
    }

    /// <summary>Polls an asynchronous condition (a request, say) until it holds or the bound passes; returns whether it held.</summary>
    public static async Task<bool> EventuallyAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + TestSupport.Bound;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            await Task.Delay(100);
        }

        return true;
    }

    /// <summary>
    /// Publishes and consumes enough on a topic of its own ("filler") to fill several segments of a
    /// <see cref="SmallLog"/>, then compacts: the log's start moves past the records written before, so the topics that
    /// still need them are rewritten as checkpoints. Returns the log's new start.
    /// </summary>
    public static async Task<long> FillAndCompactAsync(MiniQueueEngine queue)
    {
        var filler = new byte[16 * 1024];
        for (var i = 0; i < 200; i++)
        {
            await queue.PublishAsync("filler", filler);
        }

        await DrainAsync(queue, "filler");
        await queue.CompactAsync();
        return queue.Store.BeginAddress;
    }

    /// <summary>Receives and ACKs every message ready now.</summary>
    public static async Task<List<(string Text, int DackCount)>> DrainAsync(MiniQueueEngine queue, string topic)
    {
        var drained = new List<(string, int)>();
        await using var consumer = queue.Subscribe(topic);
        while (true)
        {
            if (!consumer.TryReceive(out var delivery))
            {
                // TryReceive also says no while the log's write buffer has no room for the delivery's record (a drain of
                // many messages writes faster than the buffer flushes): wait for it then, if a message is there.
                if (queue.GetStats(topic).Ready == 0)
                {
                    break;
                }

                using var timeout = new CancellationTokenSource(TestSupport.Bound);
                delivery = await consumer.ReceiveAsync(timeout.Token);
            }

            drained.Add((delivery.Text(), delivery.DackCount));
            await consumer.AckAsync();
        }

        return drained;
    }
}
