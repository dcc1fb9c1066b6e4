using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Engine;

/// <summary>Idempotent publish (docs/PROTOCOL.md "Idempotent publish"), in memory and durable, with a fake clock.</summary>
[CancelAfter(60_000)]
public sealed class IdempotentPublishTests
{
    private static PublishOptions Key(string key) => new() { IdempotencyKey = key };

    [Test]
    public async Task ARepeatedKey_WithinTheWindow_EnqueuesNothing_AndSaysSo()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await TestSupport.OpenInMemoryAsync(clock);

        var first = await queue.PublishAsync("orders", TestSupport.Bytes("order 1"), Key("k-1"));
        clock.Advance(TimeSpan.FromSeconds(119));
        var repeat = await queue.PublishAsync("orders", TestSupport.Bytes("order 1, sent again"), Key("k-1"));
        var otherKey = await queue.PublishAsync("orders", TestSupport.Bytes("order 2"), Key("k-2"));
        var otherTopic = await queue.PublishAsync("invoices", TestSupport.Bytes("same key, other topic"), Key("k-1"));
        var noKey = await queue.PublishAsync("orders", TestSupport.Bytes("order 1"));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(first.IsDuplicate, Is.False);
            Assert.That(repeat.IsDuplicate, Is.True);
            Assert.That((otherKey.IsDuplicate, otherTopic.IsDuplicate, noKey.IsDuplicate), Is.EqualTo((false, false, false)));
            Assert.That((await DurableTestSupport.DrainAsync(queue, "orders")).Select(static m => m.Text), Is.EqualTo(new[] { "order 1", "order 2", "order 1" }));
        }
    }

    [Test]
    public async Task AfterTheWindow_TheKeyPublishesAgain_AndTheWindowIsPerTopicPolicy()
    {
        var clock = TestSupport.NewClock();
        var options = new MiniQueueOptions { TimeProvider = clock };
        options.TopicPolicies.Add(new MiniQueueTopicPolicy { Topics = "short", IdempotencyWindow = TimeSpan.FromSeconds(10) });
        await using var queue = await MiniQueueEngine.OpenAsync(options);
        await queue.PublishAsync("orders", TestSupport.Bytes("a"), Key("k"));
        await queue.PublishAsync("short", TestSupport.Bytes("a"), Key("k"));

        clock.Advance(TimeSpan.FromSeconds(10));
        Assert.That((await queue.PublishAsync("short", TestSupport.Bytes("b"), Key("k"))).IsDuplicate, Is.False, "10 s window passed");
        Assert.That((await queue.PublishAsync("orders", TestSupport.Bytes("b"), Key("k"))).IsDuplicate, Is.True, "2 min window");

        clock.Advance(TimeSpan.FromSeconds(110));
        Assert.That((await queue.PublishAsync("orders", TestSupport.Bytes("c"), Key("k"))).IsDuplicate, Is.False, "2 min after the first");
        Assert.That((queue.GetStats("orders").Ready, queue.GetStats("short").Ready), Is.EqualTo((2, 2)));
    }

    [Test]
    public async Task AKeyCountsFromItsFirstPublish_NotFromItsRepeats()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await TestSupport.OpenInMemoryAsync(clock);
        await queue.PublishAsync("t", TestSupport.Bytes("a"), Key("k"));
        clock.Advance(TimeSpan.FromSeconds(100));
        Assert.That((await queue.PublishAsync("t", TestSupport.Bytes("a"), Key("k"))).IsDuplicate, Is.True);
        clock.Advance(TimeSpan.FromSeconds(20));

        Assert.That((await queue.PublishAsync("t", TestSupport.Bytes("a"), Key("k"))).IsDuplicate, Is.False);
    }

    [TestCase("")]
    [TestCase(null)]
    public void AKeyOfNoBytesOrMoreThan255_IsRefused(string? key)
    {
        key ??= new string('x', 256);
        Assert.ThrowsAsync<ArgumentException>(async () =>
        {
            await using var queue = await TestSupport.OpenInMemoryAsync();
            await queue.PublishAsync("t", TestSupport.Bytes("a"), Key(key));
        });
    }

    [Test]
    public async Task Durable_ConcurrentRepeats_EnqueueOnce_AndWaitForTheFirstToBeDurable()
    {
        using var directory = new TempDirectory();
        await using var queue = await MiniQueueEngine.OpenAsync(DurableTestSupport.SmallLog(directory.Path));

        var results = await Task.WhenAll(Enumerable.Range(0, 32).Select(i =>
            Task.Run(async () => await queue.PublishAsync("t", TestSupport.Bytes($"copy {i}"), Key("once")))));

        Assert.That(results.Count(static r => !r.IsDuplicate), Is.EqualTo(1));
        Assert.That(queue.GetStats("t").Ready, Is.EqualTo(1), "every duplicate was answered after the first was durable, hence visible");
    }

    [Test]
    public async Task Durable_TheWindowSurvivesARestart_AndACheckpoint_ButNotItsEnd()
    {
        using var directory = new TempDirectory();
        var clock = TestSupport.NewClock();
        var options = DurableTestSupport.SmallLog(directory.Path, clock);
        await using (var queue = await MiniQueueEngine.OpenAsync(options))
        {
            await queue.PublishAsync("orders", TestSupport.Bytes("order 1"), Key("k-1"));
            Assert.That(await DurableTestSupport.DrainAsync(queue, "orders"), Has.Count.EqualTo(1), "consumed: the key outlives its message");
        }

        clock.Advance(TimeSpan.FromSeconds(30));
        await using (var queue = await MiniQueueEngine.OpenAsync(options))
        {
            Assert.That((await queue.PublishAsync("orders", TestSupport.Bytes("order 1"), Key("k-1"))).IsDuplicate, Is.True, "after a restart");
            await queue.PublishAsync("orders", TestSupport.Bytes("order 2"), Key("k-2"));

            // Enough traffic to move the log's start past the keys' records: a checkpoint must carry them.
            await DurableTestSupport.DrainAsync(queue, "orders");
            Assert.That(await DurableTestSupport.FillAndCompactAsync(queue), Is.GreaterThan(0));
        }

        clock.Advance(TimeSpan.FromSeconds(60));
        await using (var queue = await MiniQueueEngine.OpenAsync(options))
        {
            Assert.That((await queue.PublishAsync("orders", TestSupport.Bytes("x"), Key("k-1"))).IsDuplicate, Is.True, "90 s after its publish");
            Assert.That((await queue.PublishAsync("orders", TestSupport.Bytes("x"), Key("k-2"))).IsDuplicate, Is.True);
        }

        clock.Advance(TimeSpan.FromSeconds(30));
        await using var last = await MiniQueueEngine.OpenAsync(options);
        Assert.That((await last.PublishAsync("orders", TestSupport.Bytes("order 1 again"), Key("k-1"))).IsDuplicate, Is.False, "120 s: its window passed");
        Assert.That((await last.PublishAsync("orders", TestSupport.Bytes("x"), Key("k-2"))).IsDuplicate, Is.True, "k-2 came 30 s later");
    }

    [Test]
    public async Task Duplicates_AreCountedPerTopic()
    {
        using var meters = new TestMeterFactory();
        using var listener = new TopicSeriesListener(meters);
        await using var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { TimeProvider = TestSupport.NewClock(), MeterFactory = meters });
        await queue.PublishAsync("t", TestSupport.Bytes("a"), Key("k"));
        await queue.PublishAsync("t", TestSupport.Bytes("a"), Key("k"));
        await queue.PublishAsync("t", TestSupport.Bytes("a"), Key("k"));

        var collected = listener.Collect();
        Assert.That((collected["messages.duplicates"]["t"], collected["messages.published"]["t"]), Is.EqualTo((2, 1)));
    }
}
