using MiniQueue.Storage;
using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Engine;

/// <summary>
/// The engine rebuilt from its log: reopening over the same <see cref="InMemoryLogStore"/> is a restart, and
/// <see cref="InMemoryLogStore.CrashCopy"/> is a crash that loses what was not committed.
/// </summary>
[CancelAfter(30_000)]
public sealed class RecoveryTests
{
    private static async Task<MiniQueueEngine> OpenAsync(ILogStore store, TimeProvider? clock = null) =>
        await MiniQueueEngine.OpenAsync(new MiniQueueOptions { TimeProvider = clock ?? TestSupport.NewClock() }, store, default);

    private static Task<List<(string Text, int DackCount)>> DrainAsync(MiniQueueEngine queue, string topic) =>
        Storage.DurableTestSupport.DrainAsync(queue, topic);

    [Test]
    public async Task Restart_KeepsReadyMessagesInOrder_AndForgetsAckedOnes()
    {
        var store = new InMemoryLogStore();
        await using (var queue = await OpenAsync(store))
        {
            for (var i = 0; i < 5; i++)
            {
                await queue.PublishAsync("t", $"m{i}");
            }

            await using var consumer = queue.Subscribe("t");
            await consumer.ReceiveTextAsync();
            await consumer.AckAsync();
        }

        await using var reopened = await OpenAsync(store);

        Assert.That((await DrainAsync(reopened, "t")).Select(m => m.Text), Is.EqualTo(new[] { "m1", "m2", "m3", "m4" }));
    }

    [Test]
    public async Task Crash_ReturnsHeldMessagesToTheFront_InDeliveryOrder()
    {
        var store = new InMemoryLogStore();
        var queue = await OpenAsync(store);
        foreach (var text in new[] { "a", "b", "c", "d" })
        {
            await queue.PublishAsync("t", text);
        }

        var first = queue.Subscribe("t");
        var second = queue.Subscribe("t");
        Assert.That(await first.ReceiveTextAsync(), Is.EqualTo("a"));
        Assert.That(await second.ReceiveTextAsync(), Is.EqualTo("b"));

        // No dispose: the process dies with both messages held.
        await using var recovered = await OpenAsync(store.CrashCopy());

        Assert.That((await DrainAsync(recovered, "t")).Select(m => m.Text), Is.EqualTo(new[] { "a", "b", "c", "d" }));
    }

    [Test]
    public async Task Crash_KeepsNackAndBackOrder()
    {
        var store = new InMemoryLogStore();
        var queue = await OpenAsync(store);
        foreach (var text in new[] { "a", "b", "c", "d" })
        {
            await queue.PublishAsync("t", text);
        }

        var consumer = queue.Subscribe("t");
        await consumer.ReceiveTextAsync();   // a
        await consumer.BackAsync();          // b c d a
        await consumer.ReceiveTextAsync();   // b
        await consumer.AckAsync();           // c d a
        await consumer.ReceiveTextAsync();   // c
        await consumer.NackAsync();          // c d a

        await using var recovered = await OpenAsync(store.CrashCopy());

        Assert.That((await DrainAsync(recovered, "t")).Select(m => m.Text), Is.EqualTo(new[] { "c", "d", "a" }));
    }

    [Test]
    public async Task Crash_KeepsDelayedMessagesDueTimeAndDackCount()
    {
        var clock = TestSupport.NewClock();
        var store = new InMemoryLogStore();
        var queue = await OpenAsync(store, clock);
        await queue.PublishAsync("t", "later");
        await queue.PublishAsync("t", "sooner");
        var consumer = queue.Subscribe("t");
        await consumer.ReceiveTextAsync();
        await consumer.DackAsync(TimeSpan.FromSeconds(30));
        await consumer.ReceiveTextAsync();
        await consumer.DackAsync(TimeSpan.Zero);
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("sooner"));
        await consumer.DackAsync(TimeSpan.FromSeconds(5));   // sooner, dackCount 2, due in 5 s

        var recoveredClock = TestSupport.NewClock();
        recoveredClock.SetUtcNow(clock.GetUtcNow());
        await using var recovered = await OpenAsync(store.CrashCopy(), recoveredClock);
        await using var reader = recovered.Subscribe("t");

        Assert.That(recovered.GetStats("t"), Is.EqualTo(new TopicStats(0, 0, 2, 1)));
        var waiting = reader.ReceiveAsync().AsTask();
        recoveredClock.Advance(TimeSpan.FromSeconds(4));
        Assert.That(waiting.IsCompleted, Is.False, "not due before its time");
        recoveredClock.Advance(TimeSpan.FromSeconds(1));
        var sooner = await waiting.WaitAsync(TestSupport.Bound);
        Assert.That((sooner.Text(), sooner.DackCount), Is.EqualTo(("sooner", 2)));
        await reader.AckAsync();
        recoveredClock.Advance(TimeSpan.FromSeconds(25));
        var later = await reader.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
        Assert.That((later.Text(), later.DackCount), Is.EqualTo(("later", 1)));
    }

    [Test]
    public async Task Crash_PurgedMessagesStayGone_HeldOnesSurvive()
    {
        var store = new InMemoryLogStore();
        var queue = await OpenAsync(store);
        foreach (var text in new[] { "held", "purged-1", "purged-2" })
        {
            await queue.PublishAsync("t", text);
        }

        await queue.PublishAsync("tx", "other topic");
        var holder = queue.Subscribe("t");
        await holder.ReceiveTextAsync();
        await queue.PurgeAsync("t");
        await queue.PublishAsync("t", "after");

        await using var recovered = await OpenAsync(store.CrashCopy());

        Assert.That((await DrainAsync(recovered, "t")).Select(m => m.Text), Is.EqualTo(new[] { "held", "after" }));
        Assert.That((await DrainAsync(recovered, "tx")).Select(m => m.Text), Is.EqualTo(new[] { "other topic" }));
    }

    [Test]
    public async Task Crash_LosesOnlyUncommittedPublishes_ThatWereNeverAcknowledged()
    {
        var store = new InMemoryLogStore(autoCommit: false);
        var queue = await OpenAsync(store);
        var durable = queue.PublishAsync("t", "durable").AsTask();
        store.Commit();
        await durable.WaitAsync(TestSupport.Bound);
        var inFlight = queue.PublishAsync("t", "in flight").AsTask();

        var crashed = store.CrashCopy();
        await using var recovered = await OpenAsync(crashed);

        Assert.That(inFlight.IsCompleted, Is.False, "the lost publish was never acknowledged");
        Assert.That((await DrainAsync(recovered, "t")).Select(m => m.Text), Is.EqualTo(new[] { "durable" }));
    }

    [Test]
    public async Task RepeatedCrashes_AfterRecovery_KeepTheSameOrder()
    {
        var store = new InMemoryLogStore();
        var queue = await OpenAsync(store);
        foreach (var text in new[] { "a", "b", "c" })
        {
            await queue.PublishAsync("t", text);
        }

        var holder = queue.Subscribe("t");
        await holder.ReceiveTextAsync();     // a held at the crash

        var once = store.CrashCopy();
        var afterFirst = await OpenAsync(once);
        var nacker = afterFirst.Subscribe("t");
        Assert.That(await nacker.ReceiveTextAsync(), Is.EqualTo("a"));
        var other = afterFirst.Subscribe("t");
        Assert.That(await other.ReceiveTextAsync(), Is.EqualTo("b"));
        await other.NackAsync();              // b, then c; a held again

        await using var afterSecond = await OpenAsync(once.CrashCopy());

        Assert.That((await DrainAsync(afterSecond, "t")).Select(m => m.Text), Is.EqualTo(new[] { "a", "b", "c" }));
    }

    [Test]
    public async Task Recovery_ContinuesMessageIdsAboveTheLog()
    {
        var store = new InMemoryLogStore();
        await using (var queue = await OpenAsync(store))
        {
            await queue.PublishAsync("t", "a");
        }

        await using var reopened = await OpenAsync(store);
        await reopened.PublishAsync("t", "b");
        await using var consumer = reopened.Subscribe("t");
        var first = await consumer.ReceiveAsync();
        await consumer.AckAsync();
        var second = await consumer.ReceiveAsync();

        Assert.That(second.MessageId, Is.GreaterThan(first.MessageId));
    }

    [Test]
    public async Task Recovery_IgnoresRecordsWhosePublishWasTruncated()
    {
        var store = new InMemoryLogStore();
        await using (var queue = await OpenAsync(store))
        {
            await queue.PublishAsync("t", "gone");
            await using var consumer = queue.Subscribe("t");
            await consumer.ReceiveTextAsync();
            await queue.PublishAsync("t", "kept");
            await consumer.AckAsync();
        }

        store.TruncateUntil(1);   // drops the publish of "gone"; its Deliver and Ack records remain

        await using var reopened = await OpenAsync(store);
        Assert.That((await DrainAsync(reopened, "t")).Select(m => m.Text), Is.EqualTo(new[] { "kept" }));
    }
}
