using MiniQueue.Engine;
using MiniQueue.Storage;

namespace MiniQueue.Tests.Storage;

/// <summary>
/// Messages larger than a log page: written as parts and a final record, delivered whole from memory and from the
/// disk, kept across restarts, copied forward by compaction, so the page size (and the log's memory) need not grow
/// with the largest message.
/// </summary>
[CancelAfter(120_000)]
public sealed class LargeMessageTests
{
    [Test]
    public void Split_CoversEveryByte_AndEveryRecordFitsTheLimit()
    {
        var random = new Random(20261201);
        for (var i = 0; i < 20_000; i++)
        {
            var limit = random.Next(60_000, 1_100_000);
            var topic = random.Next(1, 256);
            var length = random.Next(4) == 0 ? random.Next(0, 4 * limit) : random.Next(0, 64 * limit);
            var (parts, partBytes, last) = MessageBodies.Split(limit, topic, length);
            if (parts == 0)
            {
                Assert.That(LogRecord.PublishLength(topic, length), Is.LessThanOrEqualTo(limit), $"limit {limit}, topic {topic}, length {length}");
                continue;
            }

            var lastPart = length - last - ((parts - 1) * partBytes);
            Assert.That(lastPart, Is.InRange(1, partBytes), $"limit {limit}, topic {topic}, length {length}: {parts} parts");
            Assert.That(LogRecord.PartLength(partBytes), Is.LessThanOrEqualTo(limit));
            Assert.That(LogRecord.LargeHeaderLength(topic, parts) + last, Is.LessThanOrEqualTo(limit));
            Assert.That(LogRecord.PublishLength(topic, length), Is.GreaterThan(limit), "split only when one record cannot hold it");
        }
    }

    [TestCase(0)]
    [TestCase(64L * 1024 * 1024)]
    public async Task BodiesOfEverySize_AreDeliveredWhole_FromMemoryOrReadBack_AndAfterARestart(long bodyCache)
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        options.MaxMessageBytes = 2 * 1024 * 1024;
        options.BodyCacheBytes = bodyCache;
        var pageBytes = options.LogPageBytes!.Value;
        var bodies = new[] { 0, 1, pageBytes - 300, pageBytes - 40, pageBytes, pageBytes + 1, 3 * pageBytes + 7, 1_500_000 }
            .Select((length, i) => Body(length, seed: i)).ToList();
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            foreach (var body in bodies)
            {
                await queue.PublishAsync("large", body);
            }

            await using var consumer = queue.Subscribe("large");
            foreach (var body in bodies)
            {
                var delivery = await consumer.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
                Assert.That(delivery.Payload.ToArray(), Is.EqualTo(body), $"a body of {body.Length} bytes");
                await consumer.NackAsync();
                delivery = await consumer.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
                await consumer.BackAsync();
            }
        }

        await using var reopened = await DurableTestSupport.OpenAsync(options);
        var drained = await DrainBytesAsync(reopened, "large");
        Assert.That(drained.Select(body => body.Length), Is.EquivalentTo(bodies.Select(body => body.Length)));
        foreach (var body in bodies)
        {
            Assert.That(drained.Any(read => read.AsSpan().SequenceEqual(body)), Is.True, $"the body of {body.Length} bytes came back whole");
        }
    }

    [Test]
    public async Task ALargeMessageHeldForLong_IsCopiedForwardByCompaction_PartsAndAll_AndSurvivesRestarts()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        options.MaxMessageBytes = 1024 * 1024;
        options.BodyCacheBytes = 0;
        var large = Body(300_000, seed: 42);
        long firstBegin;
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            await queue.PublishAsync("pinned", large);
            var store = (FasterLogStore)queue.Store;
            firstBegin = store.BeginAddress;
            var holder = queue.Subscribe("pinned");
            Assert.That((await holder.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Payload.ToArray(), Is.EqualTo(large));

            await ChurnAsync(queue, rounds: 30);
            await queue.CompactAsync();
            await queue.PublishAsync("churn", "commit the truncation");
            Assert.That(store.BeginAddress, Is.GreaterThan(firstBegin + options.LogSegmentBytes!.Value), "the log's start moved past the large message's first place");

            // The held copy is still readable where it is now.
            await holder.NackAsync();
            await using var reader = queue.Subscribe("pinned");
            Assert.That((await reader.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Payload.ToArray(), Is.EqualTo(large));
            await reader.NackAsync();
            await holder.DisposeAsync();
        }

        await using (var reopened = await DurableTestSupport.OpenAsync(options))
        {
            await ChurnAsync(reopened, rounds: 30);
            await reopened.CompactAsync();
        }

        await using var last = await DurableTestSupport.OpenAsync(options);
        var drained = await DrainBytesAsync(last, "pinned");
        Assert.That(drained, Has.Count.EqualTo(1));
        Assert.That(drained[0], Is.EqualTo(large));
    }

    [Test]
    public async Task PartsAndRecords_AreKeptTogether_InTheInMemoryTestStore_ThroughCompaction()
    {
        // The same rules on the store fake with a small record limit: a quick check of the engine's side alone.
        var store = new InMemoryLogStore(segmentRecords: 20, recordLimit: 1000);
        var options = new MiniQueueOptions { TimeProvider = TestSupport.NewClock(), BodyCacheBytes = 0 };
        await using (var queue = await MiniQueueEngine.OpenAsync(options, store, default))
        {
            await queue.PublishAsync("pinned", Body(5_000, seed: 1));
            await using var traffic = queue.Subscribe("traffic");
            for (var i = 0; i < 200; i++)
            {
                await queue.PublishAsync("traffic", Body(i * 7, seed: i));
                await traffic.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
                await traffic.AckAsync();
            }

            await queue.CompactAsync();
            Assert.That(store.BeginAddress, Is.GreaterThan(20));
        }

        await using var reopened = await MiniQueueEngine.OpenAsync(options, store, default);
        Assert.That((await DrainBytesAsync(reopened, "pinned")).Single(), Is.EqualTo(Body(5_000, seed: 1)));
    }

    private static byte[] Body(int length, int seed)
    {
        var body = new byte[length];
        new Random(seed).NextBytes(body);
        return body;
    }

    private static async Task<List<byte[]>> DrainBytesAsync(MiniQueueEngine queue, string topic)
    {
        var drained = new List<byte[]>();
        await using var consumer = queue.Subscribe(topic);
        while (queue.GetStats(topic).Ready > 0)
        {
            var delivery = await consumer.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
            drained.Add(delivery.Payload.ToArray());
            await consumer.AckAsync();
        }

        return drained;
    }

    private static async Task ChurnAsync(MiniQueueEngine queue, int rounds)
    {
        await using var consumer = queue.Subscribe("churn");
        for (var round = 0; round < rounds; round++)
        {
            await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => queue.PublishAsync("churn", new string('c', 2048)).AsTask()));
            for (var i = 0; i < 50; i++)
            {
                await consumer.ReceiveTextAsync();
                await consumer.AckAsync();
            }
        }
    }
}
