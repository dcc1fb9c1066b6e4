using MiniQueue.Storage;
using MiniQueue.Tests.Storage;
using Moq;

namespace MiniQueue.Tests.Engine;

/// <summary>
/// The engine against its store seam: a store that fails (Moq) surfaces as a clear error and nothing is acknowledged
/// that was not stored; a store that commits later (InMemoryLogStore) holds messages back until they are durable.
/// </summary>
[CancelAfter(30_000)]
public sealed class StoreSeamTests
{
    private static readonly MiniQueueOptions s_options = new() { TimeProvider = TestSupport.NewClock() };

    [Test]
    public async Task Publish_WhenTheStoreRefusesTheRecord_FailsClearly_AndDeliversNothing()
    {
        var store = new Mock<ILogStore>();
        store.Setup(s => s.ReplayAsync(It.IsAny<CancellationToken>())).Returns(AsyncEnumerable.Empty<StoredRecord>());
        var durable = ValueTask.CompletedTask;
        store.Setup(s => s.AppendPublish(It.IsAny<LogRecord>(), out durable)).Throws(new IOException("No space left on device"));
        await using var queue = await MiniQueueEngine.OpenAsync(s_options, store.Object, default);
        await using var consumer = queue.Subscribe("t");
        var waiting = consumer.ReceiveAsync().AsTask();

        var failure = Assert.ThrowsAsync<MiniQueueStoreException>(async () => await queue.PublishAsync("t", "lost?"));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(failure!.Message, Does.Contain("No space left on device"));
            Assert.That(failure.InnerException, Is.TypeOf<IOException>());
            Assert.That(waiting.IsCompleted, Is.False, "the waiting consumer got nothing");
            Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(0, 0, 0, 1)));
            Assert.That(queue.GetTopics(), Is.Empty, "a failed publish creates no topic");
        }
    }

    [Test]
    public async Task Publish_WhenTheCommitFails_FailsClearly_DeliversNothing_AndLogsTheDiscard()
    {
        var appended = new List<LogRecord>();
        var store = new Mock<ILogStore>();
        store.Setup(s => s.ReplayAsync(It.IsAny<CancellationToken>())).Returns(AsyncEnumerable.Empty<StoredRecord>());
        store.Setup(s => s.CanRead).Returns(false);
        store.Setup(s => s.Append(It.IsAny<LogRecord>())).Returns((LogRecord record) =>
        {
            appended.Add(record);
            return appended.Count - 1;
        });

        // The record is taken, but its commit fails.
        var failing = ValueTask.FromException(new IOException("device failed"));
        store.Setup(s => s.AppendPublish(It.IsAny<LogRecord>(), out failing)).Returns((LogRecord record, ValueTask _) =>
        {
            appended.Add(record);
            return appended.Count - 1;
        });
        store.Setup(s => s.IsCommitted(It.IsAny<long>())).Returns(false);
        await using var queue = await MiniQueueEngine.OpenAsync(s_options, store.Object, default);
        await using var consumer = queue.Subscribe("t");
        var waiting = consumer.ReceiveAsync().AsTask();

        Assert.ThrowsAsync<MiniQueueStoreException>(async () => await queue.PublishAsync("t", "not durable"));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(waiting.IsCompleted, Is.False);
            Assert.That(queue.GetStats("t").Ready, Is.Zero);
            Assert.That(appended.Select(r => r.Kind), Is.EqualTo(new[] { LogRecordKind.Publish, LogRecordKind.Ack }));
            Assert.That(appended[1].MessageId, Is.EqualTo(appended[0].MessageId));
        }
    }

    [Test]
    public async Task SettleRecords_ThatTheStoreRefuses_DoNotStopConsumers()
    {
        var store = new Mock<ILogStore>();
        store.Setup(s => s.ReplayAsync(It.IsAny<CancellationToken>())).Returns(AsyncEnumerable.Empty<StoredRecord>());
        store.Setup(s => s.CanRead).Returns(false);
        store.Setup(s => s.IsCommitted(It.IsAny<long>())).Returns(true);
        var durable = ValueTask.CompletedTask;
        store.Setup(s => s.AppendPublish(It.IsAny<LogRecord>(), out durable)).Returns(1);
        store.Setup(s => s.Append(It.IsAny<LogRecord>())).Throws(new IOException("disk full"));
        await using var queue = await MiniQueueEngine.OpenAsync(s_options, store.Object, default);
        await queue.PublishAsync("t", "a");
        await queue.PublishAsync("t", "b");
        await using var consumer = queue.Subscribe("t");

        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("a"));
        await consumer.NackAsync();
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("a"));
        await consumer.AckAsync();
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("b"));
    }

    [Test]
    public async Task Purge_WhenTheStoreRefusesTheRecord_FailsAndKeepsTheMessages()
    {
        var store = new Mock<ILogStore>();
        store.Setup(s => s.ReplayAsync(It.IsAny<CancellationToken>())).Returns(AsyncEnumerable.Empty<StoredRecord>());
        store.Setup(s => s.CanRead).Returns(false);
        store.Setup(s => s.IsCommitted(It.IsAny<long>())).Returns(true);
        var durable = ValueTask.CompletedTask;
        store.Setup(s => s.AppendPublish(It.IsAny<LogRecord>(), out durable)).Returns(1);
        store.Setup(s => s.Append(It.Is<LogRecord>(r => r.Kind == LogRecordKind.Purge))).Throws(new IOException("disk full"));
        await using var queue = await MiniQueueEngine.OpenAsync(s_options, store.Object, default);
        await queue.PublishAsync("t", "a");

        Assert.ThrowsAsync<MiniQueueStoreException>(async () => await queue.PurgeAsync("t"));
        Assert.That(queue.GetStats("t").Ready, Is.EqualTo(1));
    }

    [Test]
    public async Task Publish_CompletesAndDelivers_OnlyOnceTheRecordIsCommitted()
    {
        var store = new InMemoryLogStore(autoCommit: false);
        await using var queue = await MiniQueueEngine.OpenAsync(s_options, store, default);
        await using var consumer = queue.Subscribe("t");
        var waiting = consumer.ReceiveTextAsync();

        var first = queue.PublishAsync("t", "first").AsTask();
        var second = queue.PublishAsync("t", "second").AsTask();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(first.IsCompleted || second.IsCompleted, Is.False, "not durable, not acknowledged");
            Assert.That(queue.GetStats("t").Ready, Is.Zero, "not durable, not visible");
        }

        store.Commit();
        await Task.WhenAll(first, second).WaitAsync(TestSupport.Bound);

        Assert.That(await waiting.WaitAsync(TestSupport.Bound), Is.EqualTo("first"), "visible in publish order");
        await consumer.AckAsync();
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("second"));
    }

    [Test]
    public async Task OneCommitMakesAllItCovered_Visible_AndAPublishSeenCommittedIsNotReportedFailed()
    {
        var store = new InMemoryLogStore(autoCommit: false);
        await using var queue = await MiniQueueEngine.OpenAsync(s_options, store, default);
        var first = queue.PublishAsync("t", "first").AsTask();

        // The second publish's own wait fails after its record was committed (a later commit failing first). The
        // first publish's completion finds it committed too and makes it visible: it is durable, and it was delivered.
        // The failure waits for the first publish's completion: both resume on the thread pool, in either order.
        store.FailedWaits.Add(store.TailAddress);
        store.FailedWaitsAfter = first;
        var second = queue.PublishAsync("t", "second").AsTask();
        store.Commit();
        await Task.WhenAll(first, second).WaitAsync(TestSupport.Bound);

        await using var consumer = queue.Subscribe("t");
        Assert.That(await consumer.ReceiveTextAsync().WaitAsync(TestSupport.Bound), Is.EqualTo("first"));
        await consumer.AckAsync();
        Assert.That(await consumer.ReceiveTextAsync().WaitAsync(TestSupport.Bound), Is.EqualTo("second"));
        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(Ready: 0, Held: 1, Delayed: 0, Consumers: 1)));
    }

    [Test]
    public async Task APublishWhoseWaitFails_BeforeAnyDrainFoundItCommitted_IsReportedFailed_AndNeverDelivered()
    {
        var store = new InMemoryLogStore(autoCommit: false);
        await using var queue = await MiniQueueEngine.OpenAsync(s_options, store, default);

        store.FailedWaits.Add(store.TailAddress);
        var only = queue.PublishAsync("t", "only").AsTask();
        store.Commit();

        Assert.That(async () => await only.WaitAsync(TestSupport.Bound), Throws.InstanceOf<MiniQueueStoreException>());
        Assert.That(queue.GetStats("t").Ready, Is.Zero);
    }

    [Test]
    public async Task BodyReadFailure_IsAStoreError_AndTheMessageReturnsWhenTheConsumerEnds()
    {
        var inner = new InMemoryLogStore();
        var store = new Mock<ILogStore>();
        store.Setup(s => s.ReplayAsync(It.IsAny<CancellationToken>())).Returns(AsyncEnumerable.Empty<StoredRecord>());
        store.Setup(s => s.CanRead).Returns(true);
        store.Setup(s => s.IsCommitted(It.IsAny<long>())).Returns(true);
        store.Setup(s => s.Append(It.IsAny<LogRecord>())).Returns((LogRecord record) => inner.Append(record));
        var durable = ValueTask.CompletedTask;
        store.Setup(s => s.AppendPublish(It.IsAny<LogRecord>(), out durable)).Returns((LogRecord record, ValueTask _) => inner.Append(record));
        var reads = 0;
        store.Setup(s => s.ReadAsync(It.IsAny<long>(), It.IsAny<int>(), It.IsAny<CancellationToken>()))
            .Returns((long address, int hint, CancellationToken token) => ++reads == 1
                ? ValueTask.FromException<ReadOnlyMemory<byte>>(new IOException("bad sector"))
                : inner.ReadAsync(address, hint, token));
        var noCache = new MiniQueueOptions { TimeProvider = TestSupport.NewClock(), BodyCacheBytes = 0 };
        await using var queue = await MiniQueueEngine.OpenAsync(noCache, store.Object, default);
        await queue.PublishAsync("t", "a");
        var consumer = queue.Subscribe("t");

        Assert.ThrowsAsync<MiniQueueStoreException>(async () => await consumer.ReceiveAsync());
        await consumer.DisposeAsync();

        await using var next = queue.Subscribe("t");
        Assert.That(await next.ReceiveTextAsync(), Is.EqualTo("a"));
    }
}
