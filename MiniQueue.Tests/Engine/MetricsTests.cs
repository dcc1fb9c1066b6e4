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

/// <summary>The engine's instruments on the MiniQueue meter, read with a MetricCollector.</summary>
[CancelAfter(30_000)]
public sealed class MetricsTests
{
    private static long Sum(MetricCollector<long> collector, string topic) =>
        collector.GetMeasurementSnapshot().Where(m => Equals(m.Tags["topic"], topic)).Sum(m => m.Value);

    [Test]
    public async Task Counters_CountEachOperation_PerTopic()
    {
        const string topic = "orders";
        using var meters = new TestMeterFactory();
        using var published = new MetricCollector<long>(meters, "MiniQueue", "messages.published");
        using var delivered = new MetricCollector<long>(meters, "MiniQueue", "messages.delivered");
        using var acked = new MetricCollector<long>(meters, "MiniQueue", "messages.acked");
        using var nacked = new MetricCollector<long>(meters, "MiniQueue", "messages.nacked");
        using var backed = new MetricCollector<long>(meters, "MiniQueue", "messages.backed");
        using var dacked = new MetricCollector<long>(meters, "MiniQueue", "messages.dacked");
        using var duration = new MetricCollector<double>(meters, "MiniQueue", "publish.duration");
        await using var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { MeterFactory = meters });

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

        using (Assert.EnterMultipleScope())
        {
            Assert.That(Sum(published, topic), Is.EqualTo(3));
            Assert.That(Sum(delivered, topic), Is.EqualTo(5));
            Assert.That(Sum(acked, topic), Is.EqualTo(1));
            Assert.That(Sum(nacked, topic), Is.EqualTo(2));
            Assert.That(Sum(backed, topic), Is.EqualTo(1));
            Assert.That(Sum(dacked, topic), Is.EqualTo(1));
            Assert.That(duration.GetMeasurementSnapshot().Count(m => Equals(m.Tags["topic"], topic)), Is.EqualTo(3));
        }
    }

    [Test]
    public async Task Gauges_ReportReadyHeldDelayedAndConsumers_PerTopic()
    {
        const string topic = "orders";
        using var meters = new TestMeterFactory();
        using var ready = new MetricCollector<int>(meters, "MiniQueue", "messages.ready");
        using var held = new MetricCollector<int>(meters, "MiniQueue", "messages.held");
        using var delayed = new MetricCollector<int>(meters, "MiniQueue", "messages.delayed");
        using var consumers = new MetricCollector<int>(meters, "MiniQueue", "consumers");
        await using var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { MeterFactory = meters, TimeProvider = TestSupport.NewClock() });
        for (var i = 0; i < 4; i++)
        {
            await queue.PublishAsync(topic, $"m{i}");
        }

        await using var holder = queue.Subscribe(topic);
        await using var dacker = queue.Subscribe(topic);
        await holder.ReceiveTextAsync();
        await dacker.ReceiveTextAsync();
        await dacker.DackAsync(TimeSpan.FromMinutes(1));

        foreach (var gauge in new[] { ready, held, delayed, consumers })
        {
            gauge.RecordObservableInstruments();
        }

        static int Last(MetricCollector<int> collector, string topic) =>
            collector.GetMeasurementSnapshot().Last(m => Equals(m.Tags["topic"], topic)).Value;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(Last(ready, topic), Is.EqualTo(2));
            Assert.That(Last(held, topic), Is.EqualTo(1));
            Assert.That(Last(delayed, topic), Is.EqualTo(1));
            Assert.That(Last(consumers, topic), Is.EqualTo(2));
        }
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
