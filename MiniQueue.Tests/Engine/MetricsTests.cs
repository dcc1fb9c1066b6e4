using System.Diagnostics.Metrics;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;

namespace MiniQueue.Tests.Engine;

/// <summary>
/// A meter factory of one test: its meters carry it as their scope, so a collector scoped to it sees this test's
/// engine only (the meters of engines in tests running in parallel have the same name).
/// </summary>
internal sealed class TestMeterFactory : IMeterFactory
{
    private readonly List<Meter> _meters = [];

    public Meter Create(MeterOptions options)
    {
        var meter = new Meter(new MeterOptions(options.Name) { Version = options.Version, Tags = options.Tags, Scope = this });
        _meters.Add(meter);
        return meter;
    }

    public void Dispose() => _meters.ForEach(meter => meter.Dispose());
}

/// <summary>
/// Every per-topic instrument of one test's MiniQueue meter, observed together as an exporter observes them: each
/// <see cref="Collect"/> is one collection, giving instrument → topic tag → value.
/// </summary>
internal sealed class TopicSeriesListener : IDisposable
{
    public static readonly string[] Counters = ["messages.published", "messages.delivered", "messages.acked", "messages.nacked", "messages.backed", "messages.dacked", "messages.lease_expired", "messages.dead_lettered", "messages.redriven", "messages.duplicates"];
    public static readonly string[] Gauges = ["messages.ready", "messages.held", "messages.delayed", "consumers"];

    private readonly MeterListener _listener = new();
    private readonly Dictionary<string, Dictionary<string, long>> _collected = [];

    public TopicSeriesListener(IMeterFactory meters)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Scope == meters && (Counters.Contains(instrument.Name) || Gauges.Contains(instrument.Name)))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var topic = (string)tags.ToArray().Single(tag => tag.Key == "topic").Value!;
            var series = _collected.TryGetValue(instrument.Name, out var known) ? known : _collected[instrument.Name] = [];
            Assert.That(series.TryAdd(topic, value), Is.True, $"{instrument.Name} reported {topic} once per collection");
        });
        _listener.Start();
    }

    /// <summary>One collection of every per-topic instrument.</summary>
    public IReadOnlyDictionary<string, Dictionary<string, long>> Collect()
    {
        _collected.Clear();
        foreach (var name in Counters.Concat(Gauges))
        {
            _collected[name] = [];
        }

        _listener.RecordObservableInstruments();
        return _collected.ToDictionary(static pair => pair.Key, static pair => new Dictionary<string, long>(pair.Value));
    }

    public void Dispose() => _listener.Dispose();
}

/// <summary>The engine's instruments on the MiniQueue meter.</summary>
[CancelAfter(30_000)]
public sealed class MetricsTests
{
    private const string Other = "/other";

    private static string[] AllInstruments => [.. TopicSeriesListener.Counters, .. TopicSeriesListener.Gauges];

    private static async Task<MiniQueueEngine> OpenAsync(TestMeterFactory meters, int? limit = null)
    {
        var options = new MiniQueueOptions { MeterFactory = meters, TimeProvider = TestSupport.NewClock() };
        if (limit is { } value)
        {
            options.MetricsTopicLimit = value;
        }

        return await MiniQueueEngine.OpenAsync(options);
    }

    [Test]
    public async Task Counters_CountEachOperation_PerTopic()
    {
        const string topic = "orders";
        using var meters = new TestMeterFactory();
        using var listener = new TopicSeriesListener(meters);
        using var duration = new MetricCollector<double>(meters, "MiniQueue", "publish.duration");
        await using var queue = await OpenAsync(meters);

        for (var i = 0; i < 3; i++)
        {
            await queue.PublishAsync(topic, $"m{i}");
        }

        var consumer = queue.Subscribe(topic);
        await consumer.ReceiveTextAsync();
        await consumer.AckAsync();
        await consumer.ReceiveTextAsync();
        await consumer.NackAsync();
        await consumer.ReceiveTextAsync();
        await consumer.BackAsync();
        await consumer.ReceiveTextAsync();
        await consumer.DackAsync(TimeSpan.Zero);
        await consumer.ReceiveTextAsync();
        await consumer.DisposeAsync();   // returns the held message: counted as a NACK

        var collected = listener.Collect();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(collected["messages.published"][topic], Is.EqualTo(3));
            Assert.That(collected["messages.delivered"][topic], Is.EqualTo(5));
            Assert.That(collected["messages.acked"][topic], Is.EqualTo(1));
            Assert.That(collected["messages.nacked"][topic], Is.EqualTo(2));
            Assert.That(collected["messages.backed"][topic], Is.EqualTo(1));
            Assert.That(collected["messages.dacked"][topic], Is.EqualTo(1));
            Assert.That(collected.Values.SelectMany(static series => series.Keys), Is.All.EqualTo(topic), "one topic: no other series");
        }

        // publish.duration is engine-wide: a histogram per topic would be the most expensive series of all.
        Assert.That(duration.GetMeasurementSnapshot(), Has.Count.EqualTo(3).And.All.Matches<CollectedMeasurement<double>>(static m => m.Tags.Count == 0));
    }

    [Test]
    public async Task Gauges_ReportReadyHeldDelayedAndConsumers_PerTopic()
    {
        const string topic = "orders";
        using var meters = new TestMeterFactory();
        using var listener = new TopicSeriesListener(meters);
        await using var queue = await OpenAsync(meters);
        for (var i = 0; i < 4; i++)
        {
            await queue.PublishAsync(topic, $"m{i}");
        }

        await using var holder = queue.Subscribe(topic);
        await using var dacker = queue.Subscribe(topic);
        await holder.ReceiveTextAsync();
        await dacker.ReceiveTextAsync();
        await dacker.DackAsync(TimeSpan.FromMinutes(1));

        var collected = listener.Collect();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(collected["messages.ready"][topic], Is.EqualTo(2));
            Assert.That(collected["messages.held"][topic], Is.EqualTo(1));
            Assert.That(collected["messages.delayed"][topic], Is.EqualTo(1));
            Assert.That(collected["consumers"][topic], Is.EqualTo(2));
        }
    }

    [Test]
    public async Task ManyTopics_AreBoundedByTheLimitPlusOther_TheBusiestKeepTheirNames_AndTotalsAddUp()
    {
        const int topics = 5000;
        const int limit = MiniQueueOptions.DefaultMetricsTopicLimit;
        using var meters = new TestMeterFactory();
        using var listener = new TopicSeriesListener(meters);
        await using var queue = await OpenAsync(meters);
        for (var i = 0; i < topics; i++)
        {
            await queue.PublishAsync($"t{i}", "x");
        }

        // Ten busy topics: more traffic (publishes and deliveries) and more messages queued than any other.
        var busy = Enumerable.Range(0, 10).Select(static i => $"busy{i}").ToArray();
        foreach (var topic in busy)
        {
            for (var i = 0; i < 5; i++)
            {
                await queue.PublishAsync(topic, "x");
            }

            await using var consumer = queue.Subscribe(topic);
            await consumer.ReceiveTextAsync();
            await consumer.AckAsync();
        }

        var collected = listener.Collect();

        using (Assert.EnterMultipleScope())
        {
            foreach (var name in AllInstruments)
            {
                Assert.That(collected[name], Has.Count.LessThanOrEqualTo(limit + 1), name);
                Assert.That(collected[name].Keys, Does.Contain(Other), name);
            }

            Assert.That(collected["messages.published"].Keys, Is.SupersetOf(busy));
            Assert.That(collected["messages.ready"].Keys, Is.SupersetOf(busy));
            Assert.That(collected["messages.published"]["busy3"], Is.EqualTo(5));
            Assert.That(collected["messages.ready"]["busy3"], Is.EqualTo(4));
            Assert.That(collected["messages.published"].Values.Sum(), Is.EqualTo(topics + (5 * busy.Length)), "published: the sum over all labels");
            Assert.That(collected["messages.delivered"].Values.Sum(), Is.EqualTo(busy.Length));
            Assert.That(collected["messages.acked"].Values.Sum(), Is.EqualTo(busy.Length));
            Assert.That(collected["messages.ready"].Values.Sum(), Is.EqualTo(topics + (4 * busy.Length)));
            Assert.That(collected["messages.ready"][Other], Is.EqualTo(topics - (limit - busy.Length)), "every topic without its name is in /other");
        }
    }

    [Test]
    public async Task AGoneTopic_LeavesEveryInstrument_AndItsCountsStayInTheTotals()
    {
        using var meters = new TestMeterFactory();
        using var listener = new TopicSeriesListener(meters);
        await using var queue = await OpenAsync(meters, limit: 2);
        await queue.PublishAsync("gone", "x");
        await queue.PublishAsync("gone", "y");
        await queue.PublishAsync("stays", "z");
        var before = listener.Collect();
        Assert.That(before["messages.published"], Is.EquivalentTo(new Dictionary<string, long> { ["gone"] = 2, ["stays"] = 1 }));

        await queue.PurgeAsync("gone");
        var after = listener.Collect();

        using (Assert.EnterMultipleScope())
        {
            foreach (var name in AllInstruments)
            {
                Assert.That(after[name].Keys, Does.Not.Contain("gone"), name);
            }

            Assert.That(after["messages.published"], Is.EquivalentTo(new Dictionary<string, long> { ["stays"] = 1, [Other] = 2 }), "its count moved to /other");
            Assert.That(after["messages.ready"], Is.EquivalentTo(new Dictionary<string, long> { ["stays"] = 1, [Other] = 0 }));
        }

        // Back with a publish: a new series that counts from then on.
        await queue.PublishAsync("gone", "again");
        Assert.That(listener.Collect()["messages.published"], Is.EquivalentTo(new Dictionary<string, long> { ["stays"] = 1, ["gone"] = 1, [Other] = 2 }));
    }

    [Test]
    public async Task ATopicWithAConsumerOnly_IsReported_AndGoesWhenTheConsumerDoes()
    {
        using var meters = new TestMeterFactory();
        using var listener = new TopicSeriesListener(meters);
        await using var queue = await OpenAsync(meters);
        var consumer = queue.Subscribe("waiting");

        var waiting = listener.Collect();
        await consumer.DisposeAsync();
        var gone = listener.Collect();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(waiting["consumers"], Is.EquivalentTo(new Dictionary<string, long> { ["waiting"] = 1 }));
            Assert.That(gone.Values.SelectMany(static series => series.Keys), Is.Empty);
        }
    }

    [Test]
    public async Task WhenTopicsChangePlaces_NoSeriesGoesDown_AndTotalsAddUp()
    {
        using var meters = new TestMeterFactory();
        using var listener = new TopicSeriesListener(meters);
        await using var queue = await OpenAsync(meters, limit: 2);
        for (var i = 0; i < 5; i++)
        {
            await queue.PublishAsync("a", "x");
        }

        for (var i = 0; i < 4; i++)
        {
            await queue.PublishAsync("b", "x");
        }

        await queue.PublishAsync("c", "x");
        var first = listener.Collect()["messages.published"];
        Assert.That(first, Is.EquivalentTo(new Dictionary<string, long> { ["a"] = 5, ["b"] = 4, [Other] = 1 }));

        // c becomes the busiest by far: it takes b's name. What c counted inside /other stays there, and b's count
        // joins it, so /other only grows and c's own series starts from what it counted since.
        for (var i = 0; i < 20; i++)
        {
            await queue.PublishAsync("c", "x");
        }

        var second = listener.Collect()["messages.published"];

        using (Assert.EnterMultipleScope())
        {
            Assert.That(second, Is.EquivalentTo(new Dictionary<string, long> { ["a"] = 5, ["c"] = 20, [Other] = 5 }));
            Assert.That(second.Values.Sum(), Is.EqualTo(30));
        }

        // A little more traffic on b does not take the name back: a named topic keeps it until outscored twice over.
        await queue.PublishAsync("b", "x");
        var third = listener.Collect()["messages.published"];
        Assert.That(third, Is.EquivalentTo(new Dictionary<string, long> { ["a"] = 5, ["c"] = 20, [Other] = 6 }));
    }

    [Test]
    public async Task LimitZero_ReportsEveryTopicUnderOther()
    {
        using var meters = new TestMeterFactory();
        using var listener = new TopicSeriesListener(meters);
        await using var queue = await OpenAsync(meters, limit: 0);
        await queue.PublishAsync("a", "x");
        await queue.PublishAsync("b", "x");

        var collected = listener.Collect();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(collected["messages.published"], Is.EquivalentTo(new Dictionary<string, long> { [Other] = 2 }));
            Assert.That(collected["messages.ready"], Is.EquivalentTo(new Dictionary<string, long> { [Other] = 2 }));
        }
    }

    [Test]
    public void MetricsTopicLimit_MustNotBeNegative()
    {
        Assert.That(
            () => new MiniQueueOptions { MetricsTopicLimit = -1 }.Validate(),
            Throws.ArgumentException.With.Property(nameof(ArgumentException.ParamName)).EqualTo(nameof(MiniQueueOptions.MetricsTopicLimit)));
    }
}

/// <summary>The durable store's instruments.</summary>
[CancelAfter(30_000)]
public sealed class DurableMetricsTests
{
    [Test]
    public async Task CommitDurationAndLogSize_AreReported()
    {
        using var directory = new Storage.TempDirectory();
        using var meters = new TestMeterFactory();
        using var commits = new MetricCollector<double>(meters, "MiniQueue", "commit.duration");
        using var size = new MetricCollector<long>(meters, "MiniQueue", "log.size");
        var options = Storage.DurableTestSupport.SmallLog(directory.Path);
        options.MeterFactory = meters;
        await using var queue = await MiniQueueEngine.OpenAsync(options);

        await queue.PublishAsync("t", new string('x', 5000));
        size.RecordObservableInstruments();

        // The publish is acknowledged as soon as its commit is on disk; the committer records the commit's duration
        // a moment later.
        Assert.That(await Storage.DurableTestSupport.EventuallyAsync(() => commits.GetMeasurementSnapshot().Count > 0), Is.True);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(commits.GetMeasurementSnapshot().All(m => m.Value > 0), Is.True);
            Assert.That(size.GetMeasurementSnapshot().Max(m => m.Value), Is.GreaterThan(5000));
        }
    }
}
