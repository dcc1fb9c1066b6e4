using Microsoft.Extensions.Time.Testing;

namespace MiniQueue.Tests.Engine;

/// <summary>Leases and TOUCH (docs/PROTOCOL.md "Leases"), in memory with a fake clock.</summary>
[CancelAfter(30_000)]
public sealed class LeaseTests
{
    private static readonly TimeSpan s_lease = TimeSpan.FromSeconds(30);

    private static ValueTask<MiniQueueEngine> OpenAsync(FakeTimeProvider clock, Action<MiniQueueOptions>? configure = null)
    {
        var options = new MiniQueueOptions { TimeProvider = clock, Lease = s_lease };
        configure?.Invoke(options);
        return MiniQueueEngine.OpenAsync(options);
    }

    [Test]
    public async Task HeldPastItsLease_ReturnsToTheFront_AndTheConsumerHoldsNothing()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await OpenAsync(clock);
        await queue.PublishAsync("t", "first");
        await queue.PublishAsync("t", "second");
        await using var slow = queue.Subscribe("t");
        var delivery = await slow.ReceiveAsync().Within();
        Assert.That(delivery.LeaseExpired.CanBeCanceled, Is.True, "a topic with a lease gives each delivery a lease token");

        clock.Advance(s_lease - TimeSpan.FromMilliseconds(1));
        Assert.That((slow.IsHoldingMessage, delivery.LeaseExpired.IsCancellationRequested), Is.EqualTo((true, false)), "not before the deadline");

        clock.Advance(TimeSpan.FromMilliseconds(1));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(delivery.LeaseExpired.IsCancellationRequested, Is.True);
            Assert.That(slow.IsHoldingMessage, Is.False);
            Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(2, 0, 0, 1)));
        }

        var error = Assert.ThrowsAsync<InvalidOperationException>(async () => await slow.AckAsync());
        Assert.That(error!.Message, Does.Contain("lease"));

        // Back at the front, exactly like a NACK: it comes before "second", with its dackCount unchanged.
        var again = await slow.ReceiveAsync().Within();
        Assert.That((again.Text(), again.DackCount), Is.EqualTo(("first", 0)));
        await slow.AckAsync();
        Assert.That(await slow.ReceiveTextAsync(), Is.EqualTo("second"));
    }

    [Test]
    public async Task ExpiredMessage_GoesAtOnceToAConsumerAlreadyWaiting()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await OpenAsync(clock);
        await queue.PublishAsync("t", "only");
        await using var slow = queue.Subscribe("t");
        await using var waiting = queue.Subscribe("t");
        Assert.That(await slow.ReceiveTextAsync(), Is.EqualTo("only"));
        var pending = waiting.ReceiveAsync().AsTask();
        Assert.That(await TestSupport.StaysPendingAsync(pending), Is.True);

        clock.Advance(s_lease);

        Assert.That((await pending.WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("only"));
        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(0, 1, 0, 2)));
    }

    [Test]
    public async Task Touch_RenewsTheLeaseForAFullLeaseFromNow()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await OpenAsync(clock);
        await queue.PublishAsync("t", "work");
        await using var consumer = queue.Subscribe("t");
        var delivery = await consumer.ReceiveAsync().Within();

        clock.Advance(TimeSpan.FromSeconds(20));
        await consumer.TouchAsync();
        clock.Advance(TimeSpan.FromSeconds(20));
        Assert.That((consumer.IsHoldingMessage, delivery.LeaseExpired.IsCancellationRequested), Is.EqualTo((true, false)), "40 s after receiving, 20 s after TOUCH");

        clock.Advance(TimeSpan.FromSeconds(10));
        Assert.That((consumer.IsHoldingMessage, delivery.LeaseExpired.IsCancellationRequested), Is.EqualTo((false, true)), "a full lease after TOUCH");
    }

    [Test]
    public async Task Touch_WithoutAHeldMessage_Fails()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await OpenAsync(clock);
        await using var consumer = queue.Subscribe("t");

        Assert.ThrowsAsync<InvalidOperationException>(async () => await consumer.TouchAsync());

        await queue.PublishAsync("t", "m");
        await consumer.ReceiveAsync().Within();
        clock.Advance(s_lease);
        Assert.ThrowsAsync<InvalidOperationException>(async () => await consumer.TouchAsync(), "a lapsed lease cannot be renewed");
    }

    [Test]
    public async Task SettledBeforeTheDeadline_IsNotTouchedByTheLease()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await OpenAsync(clock);
        await queue.PublishAsync("t", "a");
        await queue.PublishAsync("t", "b");
        await using var consumer = queue.Subscribe("t");
        var first = await consumer.ReceiveAsync().Within();
        await consumer.AckAsync();
        clock.Advance(TimeSpan.FromSeconds(10));
        var second = await consumer.ReceiveAsync().Within();

        // The first lease's deadline passes while the consumer holds the second message, whose lease runs 10 s longer.
        clock.Advance(TimeSpan.FromSeconds(25));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(first.LeaseExpired.IsCancellationRequested, Is.False, "an ACKed delivery's lease never fires");
            Assert.That(second.LeaseExpired.IsCancellationRequested, Is.False);
            Assert.That(consumer.IsHoldingMessage, Is.True);
        }

        await consumer.AckAsync();
        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(0, 0, 0, 1)));
    }

    [Test]
    public async Task TopicPolicies_SetTheLeasePerTopic_FirstMatchWins()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await OpenAsync(clock, options =>
        {
            options.Lease = null;
            options.TopicPolicies.Add(new MiniQueueTopicPolicy { Topics = "jobs.slow", Lease = TimeSpan.FromMinutes(10) });
            options.TopicPolicies.Add(new MiniQueueTopicPolicy { Topics = "jobs.*", Lease = TimeSpan.FromSeconds(5) });
        });
        foreach (var topic in new[] { "jobs.slow", "jobs.fast", "other" })
        {
            await queue.PublishAsync(topic, topic);
        }

        await using var slow = queue.Subscribe("jobs.slow");
        await using var fast = queue.Subscribe("jobs.fast");
        await using var other = queue.Subscribe("other");
        var deliveries = new[] { await slow.ReceiveAsync().Within(), await fast.ReceiveAsync().Within(), await other.ReceiveAsync().Within() };

        clock.Advance(TimeSpan.FromSeconds(5));
        Assert.That(new[] { slow.IsHoldingMessage, fast.IsHoldingMessage, other.IsHoldingMessage }, Is.EqualTo(new[] { true, false, true }));
        Assert.That(deliveries[2].LeaseExpired.CanBeCanceled, Is.False, "no policy, no default: no lease, as in the original");

        clock.Advance(TimeSpan.FromHours(1));
        Assert.That(new[] { slow.IsHoldingMessage, other.IsHoldingMessage }, Is.EqualTo(new[] { false, true }));
    }

    [Test]
    public async Task WithoutALease_TouchOnlyChecksThatAMessageIsHeld()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await TestSupport.OpenInMemoryAsync(clock);
        await queue.PublishAsync("t", "m");
        await using var consumer = queue.Subscribe("t");
        var delivery = await consumer.ReceiveAsync().Within();

        await consumer.TouchAsync();
        clock.Advance(TimeSpan.FromDays(30));

        Assert.That((consumer.IsHoldingMessage, delivery.LeaseExpired.CanBeCanceled), Is.EqualTo((true, false)));
    }

    [Test]
    public async Task ExpiredLeases_AreCountedPerTopic()
    {
        var clock = TestSupport.NewClock();
        using var meters = new TestMeterFactory();
        using var listener = new TopicSeriesListener(meters);
        await using var queue = await OpenAsync(clock, options => options.MeterFactory = meters);
        await queue.PublishAsync("t", "m");
        await using var consumer = queue.Subscribe("t");
        await consumer.ReceiveAsync().Within();
        clock.Advance(s_lease);
        await consumer.ReceiveAsync().Within();
        await consumer.AckAsync();

        var collected = listener.Collect();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(collected["messages.lease_expired"]["t"], Is.EqualTo(1));
            Assert.That(collected["messages.delivered"]["t"], Is.EqualTo(2));
            Assert.That(collected["messages.nacked"]["t"], Is.Zero, "an expiry is not counted as a NACK");
        }
    }

    [TestCase("")]
    [TestCase("a*b")]
    [TestCase("**")]
    public void InvalidTopicPattern_IsRefusedAtOpen(string pattern)
    {
        var options = new MiniQueueOptions();
        options.TopicPolicies.Add(new MiniQueueTopicPolicy { Topics = pattern, Lease = TimeSpan.FromSeconds(1) });

        Assert.ThrowsAsync<ArgumentException>(async () => await MiniQueueEngine.OpenAsync(options));
    }

    [Test]
    public void NonPositiveLease_IsRefusedAtOpen()
    {
        Assert.ThrowsAsync<ArgumentException>(async () => await MiniQueueEngine.OpenAsync(new MiniQueueOptions { Lease = TimeSpan.Zero }));
        Assert.ThrowsAsync<ArgumentException>(async () => await MiniQueueEngine.OpenAsync(new MiniQueueOptions { MaxDeliveries = 0 }));
    }

    [Test]
    public async Task DurableEngine_ExpiredLease_IsLoggedAsANack_AndSurvivesARestart()
    {
        var directory = Directory.CreateTempSubdirectory("mq-lease-").FullName;
        try
        {
            var clock = TestSupport.NewClock();
            var options = Storage.DurableTestSupport.SmallLog(directory, clock);
            options.Lease = s_lease;
            await using (var queue = await MiniQueueEngine.OpenAsync(options))
            {
                await queue.PublishAsync("t", "a");
                await queue.PublishAsync("t", "b");
                var consumer = queue.Subscribe("t");
                Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("a"));
                clock.Advance(s_lease);
                Assert.That(consumer.IsHoldingMessage, Is.False);
                Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("a"));
                await consumer.AckAsync();
                Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("b"));
            }

            await using var reopened = await MiniQueueEngine.OpenAsync(options);
            Assert.That(await Storage.DurableTestSupport.DrainAsync(reopened, "t"), Is.EqualTo(new[] { ("b", 0) }));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
