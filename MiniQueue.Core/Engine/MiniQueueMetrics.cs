using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace MiniQueue.Engine;

/// <summary>
/// The engine's instruments, on the <c>MiniQueue</c> meter (System.Diagnostics.Metrics; exporters such as
/// OpenTelemetry or prometheus-net pick them up). Counters and gauges carry a <c>topic</c> tag. Instrument names are
/// not prefixed, because prometheus-net prefixes them with the meter's name (<c>miniqueue_messages_published_total</c>).
/// </summary>
internal sealed class MiniQueueMetrics : IDisposable
{
    public const string MeterName = "MiniQueue";

    private readonly Meter _meter;
    private readonly bool _ownsMeter;
    private readonly Counter<long> _published;
    private readonly Counter<long> _delivered;
    private readonly Counter<long> _acked;
    private readonly Counter<long> _nacked;
    private readonly Counter<long> _backed;
    private readonly Counter<long> _dacked;
    private readonly Histogram<double> _publishDuration;
    private readonly Counter<long> _refusedForSpace;

    public MiniQueueMetrics(Meter meter, bool ownsMeter, MiniQueueEngine engine)
    {
        _meter = meter;
        _ownsMeter = ownsMeter;
        _published = _meter.CreateCounter<long>("messages.published", "{message}", "Messages published (acknowledged to the publisher).");
        _delivered = _meter.CreateCounter<long>("messages.delivered", "{message}", "Messages handed to a consumer.");
        _acked = _meter.CreateCounter<long>("messages.acked", "{message}", "Messages ACKed: done and removed.");
        _nacked = _meter.CreateCounter<long>("messages.nacked", "{message}", "Messages returned to the front (NACK, or a consumer that ended).");
        _backed = _meter.CreateCounter<long>("messages.backed", "{message}", "Messages returned to the back (BACK).");
        _dacked = _meter.CreateCounter<long>("messages.dacked", "{message}", "Messages delayed (DACK).");
        _publishDuration = _meter.CreateHistogram<double>(
            "publish.duration", "s", "From a publish to its acknowledgement (its commit, for a durable engine).",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1] });
        _meter.CreateObservableGauge("messages.ready", () => Observe(engine, static stats => stats.Ready), "{message}", "Messages waiting to be delivered.");
        _meter.CreateObservableGauge("messages.held", () => Observe(engine, static stats => stats.Held), "{message}", "Messages consumers hold.");
        _meter.CreateObservableGauge("messages.delayed", () => Observe(engine, static stats => stats.Delayed), "{message}", "DACKed messages not yet due.");
        _meter.CreateObservableGauge("consumers", () => Observe(engine, static stats => stats.Consumers), "{consumer}", "Consumers subscribed.");
        _meter.CreateObservableGauge("log.size", () => engine.LogBytes(), "By", "Bytes the durable log's files take on disk (0 in memory).");
        _refusedForSpace = _meter.CreateCounter<long>(
            "publishes.refused_for_space", "{message}", "Publishes refused because the durable store's disk was under its reserve.");
        _meter.CreateObservableGauge(
            "disk.available", () => engine.DiskSpace() is { } space ? [new Measurement<long>(space.Available)] : Array.Empty<Measurement<long>>(),
            "By", "The room the durable store's data directory has left on its disk (or under its size cap).");
        _meter.CreateObservableGauge(
            "disk.reserve", () => engine.DiskSpace() is { } space ? [new Measurement<long>(space.Reserve)] : Array.Empty<Measurement<long>>(),
            "By", "The room that publishes leave for the store's own writes; under it they are refused.");
        _meter.CreateObservableGauge(
            "disk.low", () => engine.DiskSpace() is { } space ? [new Measurement<int>(space.Low ? 1 : 0)] : Array.Empty<Measurement<int>>(),
            "", "1 while publishes are refused because the disk is under the reserve, else 0.");
    }

    /// <summary>The meter of an engine: from the options' factory (which owns it), or a new one the engine owns.</summary>
    public static (Meter Meter, bool Owned) CreateMeter(MiniQueueOptions options) =>
        options.MeterFactory is { } factory ? (factory.Create(new MeterOptions(MeterName)), false) : (new Meter(MeterName), true);

    public void Published(string topic, long startedTimestamp)
    {
        var tags = new TagList { { "topic", topic } };
        _published.Add(1, tags);
        if (_publishDuration.Enabled)
        {
            _publishDuration.Record(Stopwatch.GetElapsedTime(startedTimestamp).TotalSeconds, tags);
        }
    }

    public void RefusedForSpace() => _refusedForSpace.Add(1);

    public void Delivered(string topic) => _delivered.Add(1, new KeyValuePair<string, object?>("topic", topic));

    public void Settled(string topic, Settlement settlement)
    {
        var counter = settlement switch
        {
            Settlement.Ack => _acked,
            Settlement.Nack => _nacked,
            Settlement.Back => _backed,
            _ => _dacked,
        };
        counter.Add(1, new KeyValuePair<string, object?>("topic", topic));
    }

    private static IEnumerable<Measurement<int>> Observe(MiniQueueEngine engine, Func<TopicStats, int> value) =>
        engine.GetTopicsWithStats().Select(pair => new Measurement<int>(value(pair.Stats), new KeyValuePair<string, object?>("topic", pair.Topic)));

    public void Dispose()
    {
        if (_ownsMeter)
        {
            _meter.Dispose();
        }
    }
}
