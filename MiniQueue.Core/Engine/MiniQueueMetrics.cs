using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace MiniQueue.Engine;

/// <summary>
/// The engine's instruments, on the <c>MiniQueue</c> meter (System.Diagnostics.Metrics; exporters such as
/// OpenTelemetry or prometheus-net pick them up). Instrument names are not prefixed, because prometheus-net prefixes
/// them with the meter's name (<c>miniqueue_messages_published</c>).
/// </summary>
/// <remarks>
/// Engine-wide instruments carry no tag. The per-topic ones (message counters, ready/held/delayed, consumers) carry a
/// <c>topic</c> tag and are observable: their values are taken at each collection from counts the engine keeps
/// (<see cref="TopicMetrics"/>), which decides which topics are reported under their own name, so the number of series
/// stays bounded (<see cref="MiniQueueOptions.MetricsTopicLimit"/>) and a topic that is gone leaves the output.
/// </remarks>
internal sealed class MiniQueueMetrics : IDisposable
{
    public const string MeterName = "MiniQueue";

    private readonly Meter _meter;
    private readonly bool _ownsMeter;
    private readonly TopicMetrics _topics;
    private readonly ObservableCounter<long>[] _counters = new ObservableCounter<long>[TopicMetrics.CounterCount];
    private readonly Histogram<double> _publishDuration;
    private readonly Counter<long> _refusedForSpace;

    /// <summary>
    /// The instruments of a backend: <paramref name="topics"/> gives every topic's counts at a collection,
    /// <paramref name="logBytes"/> and <paramref name="diskSpace"/> the durable store's (0 and null without one).
    /// </summary>
    public MiniQueueMetrics(
        Meter meter,
        bool ownsMeter,
        Func<IEnumerable<(string Topic, TopicStats Stats)>> topics,
        Func<long> logBytes,
        Func<(long Available, long Reserve, bool Low)?> diskSpace,
        MiniQueueOptions options)
    {
        _meter = meter;
        _ownsMeter = ownsMeter;
        _topics = new TopicMetrics(topics, options.TimeProvider, options.MetricsTopicLimit);

        // Per topic. The instrument numbers tell TopicMetrics which instruments one collection has observed.
        _counters[(int)TopicCounter.Published] = CreateCounter(TopicCounter.Published, "messages.published", "Messages published (acknowledged to the publisher).");
        _counters[(int)TopicCounter.Delivered] = CreateCounter(TopicCounter.Delivered, "messages.delivered", "Messages handed to a consumer.");
        _counters[(int)TopicCounter.Acked] = CreateCounter(TopicCounter.Acked, "messages.acked", "Messages ACKed: done and removed.");
        _counters[(int)TopicCounter.Nacked] = CreateCounter(TopicCounter.Nacked, "messages.nacked", "Messages returned to the front (NACK, or a consumer that ended).");
        _counters[(int)TopicCounter.Backed] = CreateCounter(TopicCounter.Backed, "messages.backed", "Messages returned to the back (BACK).");
        _counters[(int)TopicCounter.Dacked] = CreateCounter(TopicCounter.Dacked, "messages.dacked", "Messages delayed (DACK).");
        _counters[(int)TopicCounter.LeaseExpired] = CreateCounter(
            TopicCounter.LeaseExpired, "messages.lease_expired", "Held messages returned to the front because their lease passed.");
        _counters[(int)TopicCounter.DeadLettered] = CreateCounter(
            TopicCounter.DeadLettered, "messages.dead_lettered", "Messages moved to the dead-letter topic after their last allowed delivery.");
        _counters[(int)TopicCounter.Redriven] = CreateCounter(
            TopicCounter.Redriven, "messages.redriven", "Messages moved back from the dead-letter topic (redrive); counted on the topic they return to.");
        _counters[(int)TopicCounter.Duplicates] = CreateCounter(
            TopicCounter.Duplicates, "messages.duplicates", "Publishes that repeated an idempotency key within its window and enqueued nothing.");
        CreateGauge(TopicMetrics.CounterCount + 0, "messages.ready", static totals => totals.Ready, "{message}", "Messages waiting to be delivered.");
        CreateGauge(TopicMetrics.CounterCount + 1, "messages.held", static totals => totals.Held, "{message}", "Messages consumers hold.");
        CreateGauge(TopicMetrics.CounterCount + 2, "messages.delayed", static totals => totals.Delayed, "{message}", "DACKed messages not yet due.");
        CreateGauge(TopicMetrics.CounterCount + 3, "consumers", static totals => totals.Consumers, "{consumer}", "Consumers subscribed.");

        // Engine-wide. A histogram per topic would be the most expensive series of all: publish.duration has no topic.
        _publishDuration = _meter.CreateHistogram<double>(
            "publish.duration", "s", "From a publish to its acknowledgement (its commit, for a durable engine).",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1] });
        _meter.CreateObservableGauge("log.size", logBytes, "By", "Bytes the durable log's files take on disk (0 in memory).");
        _refusedForSpace = _meter.CreateCounter<long>(
            "publishes.refused_for_space", "{message}", "Publishes refused because the durable store's disk was under its reserve.");
        _meter.CreateObservableGauge(
            "disk.available", () => diskSpace() is { } space ? [new Measurement<long>(space.Available)] : Array.Empty<Measurement<long>>(),
            "By", "The room the durable store's data directory has left on its disk (or under its size cap).");
        _meter.CreateObservableGauge(
            "disk.reserve", () => diskSpace() is { } space ? [new Measurement<long>(space.Reserve)] : Array.Empty<Measurement<long>>(),
            "By", "The room that publishes leave for the store's own writes; under it they are refused.");
        _meter.CreateObservableGauge(
            "disk.low", () => diskSpace() is { } space ? [new Measurement<int>(space.Low ? 1 : 0)] : Array.Empty<Measurement<int>>(),
            "", "1 while publishes are refused because the disk is under the reserve, else 0.");
    }

    /// <summary>The meter of an engine: from the options' factory (which owns it), or a new one the engine owns.</summary>
    public static (Meter Meter, bool Owned) CreateMeter(MiniQueueOptions options) =>
        options.MeterFactory is { } factory ? (factory.Create(new MeterOptions(MeterName)), false) : (new Meter(MeterName), true);

    public void Published(string topic, long startedTimestamp)
    {
        Count(topic, TopicCounter.Published);
        if (_publishDuration.Enabled)
        {
            _publishDuration.Record(Stopwatch.GetElapsedTime(startedTimestamp).TotalSeconds);
        }
    }

    public void LeaseExpired(string topic) => Count(topic, TopicCounter.LeaseExpired);

    public void DeadLettered(string topic, int count = 1) => Count(topic, TopicCounter.DeadLettered, count);

    public void Redriven(string topic, int count) => Count(topic, TopicCounter.Redriven, count);

    public void Duplicate(string topic) => Count(topic, TopicCounter.Duplicates);

    public void RefusedForSpace() => _refusedForSpace.Add(1);

    public void Delivered(string topic) => Count(topic, TopicCounter.Delivered);

    public void Settled(string topic, Settlement settlement) => Count(topic, settlement switch
    {
        Settlement.Ack => TopicCounter.Acked,
        Settlement.Nack => TopicCounter.Nacked,
        Settlement.Back => TopicCounter.Backed,
        _ => TopicCounter.Dacked,
    });

    public void Dispose()
    {
        if (_ownsMeter)
        {
            _meter.Dispose();
        }
    }

    /// <summary>Counts an operation, unless nobody listens to its counter.</summary>
    private void Count(string topic, TopicCounter counter, long amount = 1)
    {
        if (_counters[(int)counter].Enabled)
        {
            _topics.Count(topic, counter, traffic: counter is TopicCounter.Published or TopicCounter.Delivered, amount);
        }
    }

    private ObservableCounter<long> CreateCounter(TopicCounter counter, string name, string description) =>
        _meter.CreateObservableCounter(name, () => Measure(_topics.ObserveCounter((int)counter, counter)), "{message}", description);

    private void CreateGauge(int instrument, string name, Func<TopicTotals, long> value, string unit, string description) =>
        _meter.CreateObservableGauge(name, () => Measure(_topics.ObserveGauge(instrument, value)), unit, description);

    private static Measurement<long>[] Measure(IReadOnlyList<(string Topic, long Value)> values)
    {
        var measurements = new Measurement<long>[values.Count];
        for (var i = 0; i < values.Count; i++)
        {
            measurements[i] = new Measurement<long>(values[i].Value, new KeyValuePair<string, object?>("topic", values[i].Topic));
        }

        return measurements;
    }
}
