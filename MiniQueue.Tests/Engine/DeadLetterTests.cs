using Microsoft.Extensions.Time.Testing;
using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Engine;

/// <summary>Max deliveries, the dead-letter topic and redrive (docs/PROTOCOL.md "Dead letters"), in memory and durable.</summary>
[CancelAfter(60_000)]
public sealed class DeadLetterTests
{
    private static MiniQueueOptions Limited(FakeTimeProvider clock, string? directory = null)
    {
        var options = directory is null ? new MiniQueueOptions { TimeProvider = clock } : DurableTestSupport.SmallLog(directory, clock);
        options.MaxDeliveries = 2;
        return options;
    }

    /// <summary>Receives the topic's next message and NACKs it; returns its text.</summary>
    private static async Task<string> ReceiveAndNackAsync(MiniQueueConsumer consumer)
    {
        var text = await consumer.ReceiveTextAsync();
        await consumer.NackAsync();
        return text;
    }

    private static Task<bool> DeadLetteredAsync(MiniQueueEngine queue, string deadTopic, int count) =>
        DurableTestSupport.EventuallyAsync(() => queue.GetStats(deadTopic).Ready == count);

    [Test]
    public async Task AMessageDeliveredTheMostAllowedTimes_MovesToTheDeadTopic_InsteadOfItsNextDelivery()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await MiniQueueEngine.OpenAsync(Limited(clock));
        await queue.PublishAsync("jobs", "poison");
        await queue.PublishAsync("jobs", "fine");
        await using var consumer = queue.Subscribe("jobs");

        Assert.That(await ReceiveAndNackAsync(consumer), Is.EqualTo("poison"));
        Assert.That(await ReceiveAndNackAsync(consumer), Is.EqualTo("poison"));

        // A third delivery would be one too many: the consumer gets the next message instead.
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("fine"));
        await consumer.AckAsync();
        Assert.That(await DeadLetteredAsync(queue, "jobs.dead", 1), Is.True);
        Assert.That(queue.GetStats("jobs"), Is.EqualTo(new TopicStats(0, 0, 0, 1)));

        // There it is an ordinary message, with its body, dackCount 0, and no limit carried over.
        await using var dead = queue.Subscribe("jobs.dead");
        var delivery = await dead.ReceiveAsync().Within();
        Assert.That((delivery.Text(), delivery.DackCount), Is.EqualTo(("poison", 0)));
    }

    [Test]
    public async Task DeliveriesOfEveryKind_Count_DackedAndLeaseExpiredOnesToo()
    {
        var clock = TestSupport.NewClock();
        var options = Limited(clock);
        options.MaxDeliveries = 3;
        options.Lease = TimeSpan.FromSeconds(10);
        await using var queue = await MiniQueueEngine.OpenAsync(options);
        await queue.PublishAsync("jobs", "poison");
        await using var consumer = queue.Subscribe("jobs");

        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("poison"));
        await consumer.DackAsync(TimeSpan.Zero);
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("poison"));
        clock.Advance(TimeSpan.FromSeconds(10));   // the lease passes: back to the front
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("poison"));
        await consumer.BackAsync();

        var next = consumer.ReceiveAsync().AsTask();
        Assert.That(await DeadLetteredAsync(queue, "jobs.dead", 1), Is.True);
        Assert.That(await TestSupport.StaysPendingAsync(next), Is.True, "nothing else to deliver");
    }

    [Test]
    public async Task DeadLetteredMessages_GoToTheEndOfTheDeadTopic_InTheOrderTheyFailed_AndWakeItsConsumers()
    {
        var clock = TestSupport.NewClock();
        var options = Limited(clock);
        options.MaxDeliveries = 1;
        await using var queue = await MiniQueueEngine.OpenAsync(options);
        await using var deadConsumer = queue.Subscribe("jobs.dead");
        var waiting = deadConsumer.ReceiveAsync().AsTask();
        await using var consumer = queue.Subscribe("jobs");
        foreach (var text in new[] { "a", "b", "c" })
        {
            // Each receive first sets aside the message NACKed before it (delivered once, the most allowed).
            await queue.PublishAsync("jobs", text);
            Assert.That(await ReceiveAndNackAsync(consumer), Is.EqualTo(text));
        }

        var nothingLeft = consumer.ReceiveAsync().AsTask();

        Assert.That((await waiting.WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("a"), "a consumer waiting on the dead topic gets the first at once");
        await deadConsumer.AckAsync();
        Assert.That(await deadConsumer.ReceiveTextAsync(), Is.EqualTo("b"));
        await deadConsumer.AckAsync();
        Assert.That(await deadConsumer.ReceiveTextAsync(), Is.EqualTo("c"));
        Assert.That(await TestSupport.StaysPendingAsync(nothingLeft), Is.True);
    }

    [Test]
    public async Task TopicPolicies_NameTheDeadLetterTopic_AndTheLimitPerTopic()
    {
        var clock = TestSupport.NewClock();
        var options = new MiniQueueOptions { TimeProvider = clock };
        options.TopicPolicies.Add(new MiniQueueTopicPolicy { Topics = "orders.*", MaxDeliveries = 1, DeadLetterTopic = "orders-failed" });
        await using var queue = await MiniQueueEngine.OpenAsync(options);
        await queue.PublishAsync("orders.eu", "bad order");
        await queue.PublishAsync("other", "no limit");
        await using (var orders = queue.Subscribe("orders.eu"))
        {
            await ReceiveAndNackAsync(orders);
            var next = orders.ReceiveAsync().AsTask();
            Assert.That(await DeadLetteredAsync(queue, "orders-failed", 1), Is.True);
            Assert.That(next.IsCompleted, Is.False);
        }

        await using var other = queue.Subscribe("other");
        for (var i = 0; i < 5; i++)
        {
            Assert.That(await ReceiveAndNackAsync(other), Is.EqualTo("no limit"));
        }

        Assert.That(queue.GetTopics(), Does.Not.Contain("other.dead"));
    }

    [Test]
    public async Task Redrive_MovesEveryMessageOfTheDeadTopicBack_ToTheEnd_ButNotHeldOnes()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { TimeProvider = clock });
        foreach (var text in new[] { "d1", "d2", "d3", "d4" })
        {
            await queue.PublishAsync("jobs.dead", text);
        }

        await queue.PublishAsync("jobs", "waiting");
        await using var deadConsumer = queue.Subscribe("jobs.dead");
        Assert.That(await deadConsumer.ReceiveTextAsync(), Is.EqualTo("d1"));   // held: stays
        await using var dacker = queue.Subscribe("jobs.dead");
        Assert.That(await dacker.ReceiveTextAsync(), Is.EqualTo("d2"));
        await dacker.DackAsync(TimeSpan.FromHours(1));                          // delayed: moves too

        Assert.That(await queue.RedriveAsync("jobs"), Is.EqualTo(3));

        Assert.That(queue.GetStats("jobs.dead"), Is.EqualTo(new TopicStats(0, 1, 0, 2)));
        Assert.That(
            await DurableTestSupport.DrainAsync(queue, "jobs"),
            Is.EqualTo(new[] { ("waiting", 0), ("d3", 0), ("d4", 0), ("d2", 0) }),
            "to the end, in the dead topic's delivery order (ready, then delayed), as new messages");
        Assert.That(await queue.RedriveAsync("jobs"), Is.Zero);
        Assert.That(await queue.RedriveAsync("nothing-here"), Is.Zero);
    }

    [Test]
    public async Task Durable_DeliveryCounts_SurviveARestartAndACheckpoint_AndMovesAndRedrivesToo()
    {
        using var directory = new TempDirectory();
        var clock = TestSupport.NewClock();
        var options = Limited(clock, directory.Path);
        options.MaxDeliveries = 3;
        await using (var queue = await MiniQueueEngine.OpenAsync(options))
        {
            await queue.PublishAsync("jobs", "poison");
            await queue.PublishAsync("jobs", "slow poison");
            await using var consumer = queue.Subscribe("jobs");
            Assert.That(await ReceiveAndNackAsync(consumer), Is.EqualTo("poison"));
            Assert.That(await ReceiveAndNackAsync(consumer), Is.EqualTo("poison"));
        }

        await using (var queue = await MiniQueueEngine.OpenAsync(options))
        {
            // Enough traffic to make compaction rewrite "jobs" as a checkpoint, which must carry the counts.
            Assert.That(await DurableTestSupport.FillAndCompactAsync(queue), Is.GreaterThan(0));
            await using var consumer = queue.Subscribe("jobs");
            Assert.That(await ReceiveAndNackAsync(consumer), Is.EqualTo("poison"), "the third delivery");
            Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("slow poison"), "a fourth delivery of poison would be one too many");
            await consumer.NackAsync();
            Assert.That(await DeadLetteredAsync(queue, "jobs.dead", 1), Is.True);
        }

        await using (var queue = await MiniQueueEngine.OpenAsync(options))
        {
            Assert.That(queue.GetStats("jobs.dead").Ready, Is.EqualTo(1), "the move is in the log");
            Assert.That(queue.GetStats("jobs").Ready, Is.EqualTo(1));
            Assert.That(await queue.RedriveAsync("jobs"), Is.EqualTo(1));
        }

        await using (var queue = await MiniQueueEngine.OpenAsync(options))
        {
            Assert.That(queue.GetStats("jobs.dead").Ready, Is.Zero, "the redrive is in the log");
            Assert.That(
                (await DurableTestSupport.DrainAsync(queue, "jobs")).Select(static m => m.Text),
                Is.EqualTo(new[] { "slow poison", "poison" }),
                "a redriven message starts over: three more deliveries");
        }
    }

    [Test]
    public async Task Durable_PurgeOfADeadTopic_HoldsAfterARestart_EvenForMessagesNewerThanItsOwn()
    {
        using var directory = new TempDirectory();
        var clock = TestSupport.NewClock();
        var options = Limited(clock, directory.Path);
        options.MaxDeliveries = 1;
        await using (var queue = await MiniQueueEngine.OpenAsync(options))
        {
            await queue.PublishAsync("jobs.dead", "published there");
            await queue.PublishAsync("jobs", "moved there later, with a higher id");
            await using var consumer = queue.Subscribe("jobs");
            await ReceiveAndNackAsync(consumer);
            var next = consumer.ReceiveAsync().AsTask();
            Assert.That(await DeadLetteredAsync(queue, "jobs.dead", 2), Is.True);
            Assert.That(next.IsCompleted, Is.False);
            Assert.That(await queue.PurgeAsync("jobs.dead"), Is.EqualTo(2));
        }

        await using var reopened = await MiniQueueEngine.OpenAsync(options);
        Assert.That(reopened.GetStats("jobs.dead").Ready, Is.Zero);
        Assert.That(reopened.GetStats("jobs").Ready, Is.Zero);
    }
}
