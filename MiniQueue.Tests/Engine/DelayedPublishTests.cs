using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Engine;

/// <summary>Publishing with a delay (docs/PROTOCOL.md "Delayed publish"), in memory and durable, with a fake clock.</summary>
[CancelAfter(30_000)]
public sealed class DelayedPublishTests
{
    private static PublishOptions After(int seconds) => new() { Delay = TimeSpan.FromSeconds(seconds) };

    [Test]
    public async Task DelayedMessage_IsDeliveredNoEarlierThanItsDelay_WithDackCountZero()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await TestSupport.OpenInMemoryAsync(clock);
        await queue.PublishAsync("t", TestSupport.Bytes("later"), After(10));
        await queue.PublishAsync("t", "now");
        await using var consumer = queue.Subscribe("t");

        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(1, 0, 1, 1)), "stored at once, counted as delayed");
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("now"));
        await consumer.AckAsync();
        var waiting = consumer.ReceiveAsync().AsTask();

        clock.Advance(TimeSpan.FromSeconds(9));
        Assert.That(await TestSupport.StaysPendingAsync(waiting), Is.True, "not before its delay");

        clock.Advance(TimeSpan.FromSeconds(1));
        var delivery = await waiting.WaitAsync(TestSupport.Bound);
        Assert.That((delivery.Text(), delivery.DackCount), Is.EqualTo(("later", 0)));
    }

    [Test]
    public async Task DelayedMessages_ComeInDueOrder_AmongDackedOnes_AheadOfTheFifoOnes()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await TestSupport.OpenInMemoryAsync(clock);
        await queue.PublishAsync("t", TestSupport.Bytes("due-30"), After(30));
        await queue.PublishAsync("t", TestSupport.Bytes("due-10"), After(10));
        await queue.PublishAsync("t", "dacked");
        await using (var consumer = queue.Subscribe("t"))
        {
            Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("dacked"));
            await consumer.DackAsync(TimeSpan.FromSeconds(20));
        }

        await queue.PublishAsync("t", TestSupport.Bytes("due-20-later"), After(20));
        await queue.PublishAsync("t", "fifo");
        clock.Advance(TimeSpan.FromMinutes(1));

        Assert.That(
            (await DurableTestSupport.DrainAsync(queue, "t")).Select(static m => m.Text),
            Is.EqualTo(new[] { "due-10", "dacked", "due-20-later", "due-30", "fifo" }),
            "due order, ties in the order they were delayed, then FIFO");
    }

    [Test]
    public async Task ZeroDelay_IsAnOrdinaryPublish()
    {
        await using var queue = await TestSupport.OpenInMemoryAsync();
        await queue.PublishAsync("t", TestSupport.Bytes("a"), After(0));
        await queue.PublishAsync("t", TestSupport.Bytes("b"), new PublishOptions { Delay = TimeSpan.FromSeconds(-5) });

        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(2, 0, 0, 0)));
    }

    [Test]
    public async Task Purge_DiscardsDelayedPublishes()
    {
        await using var queue = await TestSupport.OpenInMemoryAsync();
        await queue.PublishAsync("t", TestSupport.Bytes("later"), After(60));

        Assert.That(await queue.PurgeAsync("t"), Is.EqualTo(1));
        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(0, 0, 0, 0)));
    }

    [Test]
    public async Task Durable_DelayedPublish_KeepsItsDueTime_AcrossAReopen_AndACheckpoint()
    {
        using var directory = new TempDirectory();
        var clock = TestSupport.NewClock();
        var options = DurableTestSupport.SmallLog(directory.Path, clock);
        await using (var queue = await MiniQueueEngine.OpenAsync(options))
        {
            await queue.PublishAsync("t", TestSupport.Bytes("in 100 s"), After(100));
            await queue.PublishAsync("t", TestSupport.Bytes("in 50 s"), After(50));
            await queue.PublishAsync("t", "ready");
        }

        clock.Advance(TimeSpan.FromSeconds(40));
        await using (var reopened = await MiniQueueEngine.OpenAsync(options))
        {
            Assert.That(reopened.GetStats("t"), Is.EqualTo(new TopicStats(1, 0, 2, 0)));
            Assert.That(await DurableTestSupport.DrainAsync(reopened, "t"), Is.EqualTo(new[] { ("ready", 0) }));

            // Enough traffic on another topic to fill segments, so that compaction writes a checkpoint of "t".
            Assert.That(
                await DurableTestSupport.FillAndCompactAsync(reopened), Is.GreaterThan(0), "the first publish records are gone: only the checkpoint knows the due times");
            clock.Advance(TimeSpan.FromSeconds(10));
            Assert.That(await DurableTestSupport.DrainAsync(reopened, "t"), Is.EqualTo(new[] { ("in 50 s", 0) }));
        }

        await using var last = await MiniQueueEngine.OpenAsync(options);
        Assert.That(last.GetStats("t"), Is.EqualTo(new TopicStats(0, 0, 1, 0)), "still delayed: due at 100 s, now 50 s");
        clock.Advance(TimeSpan.FromSeconds(50));
        Assert.That(await DurableTestSupport.DrainAsync(last, "t"), Is.EqualTo(new[] { ("in 100 s", 0) }));
    }
}
