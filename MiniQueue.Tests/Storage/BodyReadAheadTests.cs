using System.Text;
using MiniQueue.Storage;

namespace MiniQueue.Tests.Storage;

/// <summary>
/// Bodies the cache did not keep are read back from a real FasterLog many at a time (one read of the log for the
/// messages queued next): every delivery still gets its own body, in order, whatever the consumers do meanwhile.
/// </summary>
[CancelAfter(60_000)]
public sealed class BodyReadAheadTests
{
    /// <summary>Publishes <paramref name="count"/> bodies of 7 to 306 bytes to topic t; returns them in order.</summary>
    private static async Task<List<string>> PublishBodiesAsync(MiniQueueEngine queue, int count, string tag)
    {
        var bodies = Enumerable.Range(0, count).Select(i => $"{tag}{i:D5}:" + new string((char)('a' + (i % 26)), i % 300)).ToList();
        foreach (var body in bodies)
        {
            await queue.PublishAsync("t", body);
        }

        return bodies;
    }

    private static async Task<MiniQueueEngine> OpenUncachedAsync(string directory)
    {
        var options = DurableTestSupport.SmallLog(directory);
        options.BodyCacheBytes = 0;
        return await DurableTestSupport.OpenAsync(options);
    }

    [Test]
    public async Task OneConsumer_GetsEveryBody_InOrder_MostlyFromReadsAhead()
    {
        using var directory = new TempDirectory();
        await using var queue = await OpenUncachedAsync(directory.Path);
        var bodies = await PublishBodiesAsync(queue, 600, "m");

        Assert.That(queue.CachedBodyBytes, Is.Zero);
        Assert.That((await DurableTestSupport.DrainAsync(queue, "t")).Select(m => m.Text), Is.EqualTo(bodies));

        // Without the read ahead (or with a wrong check of the store's records) every body is read alone: 0.
        Assert.That(queue.BodiesReadAhead, Is.GreaterThan(500));
    }

    [Test]
    public async Task ManyConsumers_EachMessageOnce_WithItsOwnBody()
    {
        using var directory = new TempDirectory();
        await using var queue = await OpenUncachedAsync(directory.Path);
        var bodies = await PublishBodiesAsync(queue, 2000, "c");

        var received = new System.Collections.Concurrent.ConcurrentBag<string>();
        await Task.WhenAll(Enumerable.Range(0, 12).Select(_ => Task.Run(async () =>
        {
            await using var consumer = queue.Subscribe("t");
            while (await ReceiveOrNullAsync(consumer) is { } text)
            {
                received.Add(text);
                await consumer.AckAsync();
            }
        })));

        Assert.That(received, Is.EquivalentTo(bodies));
        Assert.That(queue.BodiesReadAhead, Is.GreaterThan(1000));
    }

    [Test]
    public async Task AReadAheadThatFailsUnexpectedly_DoesNotHoldUpTheDeliveriesWaitingForIt()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        options.BodyCacheBytes = 0;
        var store = new FailingReadAheadStore(FasterLogStore.Open(options, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance));
        await using var queue = await MiniQueueEngine.OpenAsync(options, store, default);
        var bodies = await PublishBodiesAsync(queue, 600, "f");

        // The first read ahead fails with an exception the read ahead does not expect, after the other consumers have
        // come to wait for it; each of them must go on (reading its body alone), and so must later reads ahead.
        var received = new System.Collections.Concurrent.ConcurrentBag<string>();
        var failed = 0;
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
        {
            await using var consumer = queue.Subscribe("t");
            while (true)
            {
                string? text;
                try
                {
                    text = await ReceiveOrNullAsync(consumer);
                }
                catch (MiniQueueStoreException)
                {
                    // The consumer holds the message whose body it could not read: NACK gives it back.
                    Interlocked.Increment(ref failed);
                    await consumer.NackAsync();
                    continue;
                }

                if (text is null)
                {
                    return;
                }

                received.Add(text);
                await consumer.AckAsync();
            }
        }))).WaitAsync(TimeSpan.FromSeconds(30)); // a delivery left waiting for the failed read would wait for ever

        Assert.That(store.Failures, Is.EqualTo(1));
        Assert.That(failed, Is.LessThanOrEqualTo(1), "only the delivery whose read failed saw it");
        Assert.That(received, Is.EquivalentTo(bodies), "every message once, with its own body");
        Assert.That(queue.BodiesReadAhead, Is.GreaterThan(300), "reads ahead went on after the failed one");
    }

    /// <summary>A store whose first read ahead waits a moment, then fails with an exception of no expected kind.</summary>
    private sealed class FailingReadAheadStore(ILogStore inner) : MiniQueue.Tests.Engine.DelegatingStore(inner)
    {
        private int _failures;

        public int Failures => Volatile.Read(ref _failures);

        public override byte[]?[] ReadCommittedRecords(IReadOnlyList<(long Address, int Length)> records)
        {
            if (Interlocked.CompareExchange(ref _failures, 1, 0) == 0)
            {
                Thread.Sleep(100);
                throw new InvalidOperationException("a read ahead that failed unexpectedly");
            }

            return base.ReadCommittedRecords(records);
        }
    }

    /// <summary>The next message's text, or null once the topic stays empty for a moment.</summary>
    private static async Task<string?> ReceiveOrNullAsync(MiniQueueConsumer consumer)
    {
        using var idle = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        try
        {
            var delivery = await consumer.ReceiveAsync(idle.Token);
            return delivery.Text();
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    [Test]
    public async Task NackedAndBackedMessages_AndAPurge_InTheMiddleOfAWindow_StillGetTheirOwnBodies()
    {
        using var directory = new TempDirectory();
        await using var queue = await OpenUncachedAsync(directory.Path);
        var bodies = await PublishBodiesAsync(queue, 300, "n");

        await using var consumer = queue.Subscribe("t");
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo(bodies[0]));
        await consumer.AckAsync();
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo(bodies[1]));
        await consumer.NackAsync();
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo(bodies[1]), "a NACKed message comes again, with its body");
        await consumer.BackAsync();
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo(bodies[2]));
        await consumer.AckAsync();

        // The window now holds bodies of messages the purge discards; those published after must not meet them.
        Assert.That(await queue.PurgeAsync("t"), Is.EqualTo(298));
        var after = await PublishBodiesAsync(queue, 300, "p");

        Assert.That((await DurableTestSupport.DrainAsync(queue, "t")).Select(m => m.Text), Is.EqualTo(after));
    }

    [Test]
    public async Task ARecordDamagedOnDisk_IsNotTakenFromTheReadAhead()
    {
        using var directory = new TempDirectory();
        await using var queue = await OpenUncachedAsync(directory.Path);
        var bodies = await PublishBodiesAsync(queue, 200, "d");

        // Change one byte of message 100's body in the file: a read ahead that checked nothing would deliver it damaged.
        var segment = Path.Combine(directory.Path, "wal.log.0");
        var content = await File.ReadAllBytesAsync(segment);
        var target = Encoding.UTF8.GetBytes(bodies[100]);
        var at = content.AsSpan().IndexOf(target);
        Assert.That(at, Is.GreaterThan(0), "the body is in the first segment's file");
        using (var file = File.OpenHandle(segment, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
        {
            RandomAccess.Write(file, new[] { (byte)(content[at + 2] ^ 0x20) }, at + 2);
        }

        await using var consumer = queue.Subscribe("t");
        for (var i = 0; i < bodies.Count; i++)
        {
            if (i == 100)
            {
                // Read alone, FasterLog finds the damage too: the consumer holds the message and hears why it has no body.
                Assert.That(async () => await consumer.ReceiveAsync(), Throws.TypeOf<MiniQueueStoreException>().With.Message.Contains("Checksum"));
            }
            else
            {
                Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo(bodies[i]));
            }

            await consumer.AckAsync();
        }

        Assert.That(queue.BodiesReadAhead, Is.InRange(150, 199), "the other bodies came from reads ahead");
    }

    [Test]
    public void TheStoresChecksum_IsTheXorOfLittleEndianWords_ThenOfTheBytesLeftOver()
    {
        byte[] bytes = [1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0x80, 0xF0, 0x0F];

        Assert.That(FasterLogStore.XorChecksum(bytes), Is.EqualTo(1UL ^ (2UL | (0x80UL << 56)) ^ 0xF0UL ^ 0x0FUL));
    }
}
