using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Prometheus;

namespace MiniQueue.Host;

/// <summary>
/// The few .NET instruments recorded once per request or per message, exported to Prometheus at the cost of a histogram
/// observation each. prometheus-net's <c>MeterAdapter</c> costs several microseconds per measurement (label arrays,
/// lease bookkeeping for series expiry); under a durable publish load it took a quarter of the server's CPU, more than
/// MiniQueue itself. Instruments recorded more often still (Kestrel's memory pool counts every buffer, routing every
/// match) are left out of the export altogether.
/// </summary>
internal sealed class HotMetrics : IDisposable
{
    /// <summary>Instruments this class exports itself; the meter adapter leaves them alone.</summary>
    private static readonly HashSet<(string Meter, string Instrument)> s_hot =
    [
        ("MiniQueue", "publish.duration"),
        ("Microsoft.AspNetCore.Hosting", "http.server.request.duration"),
    ];

    private static readonly double[] s_publishBuckets = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
    private static readonly double[] s_requestBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    private readonly MeterListener _listener = new();
    private readonly Histogram _publishDuration;
    private readonly Histogram _requestDuration;
    private readonly ConcurrentDictionary<RequestLabels, Histogram.Child> _requestChildren = new();

    public HotMetrics(CollectorRegistry registry)
    {
        var factory = Metrics.WithCustomRegistry(registry);
        _publishDuration = factory.CreateHistogram(
            "miniqueue_publish_duration", "From a publish to its acknowledgement (its commit, for a durable engine), in seconds.",
            new HistogramConfiguration { Buckets = s_publishBuckets });
        _requestDuration = factory.CreateHistogram(
            "microsoft_aspnetcore_hosting_http_server_request_duration", "Duration of HTTP server requests, in seconds.",
            new HistogramConfiguration
            {
                Buckets = s_requestBuckets,
                LabelNames = ["http_request_method", "http_route", "http_response_status_code", "network_protocol_version"],
            });
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (IsHot(instrument))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<double>(OnMeasurement);
        _listener.Start();
    }

    /// <summary>Whether prometheus-net's meter adapter should leave <paramref name="instrument"/> out.</summary>
    /// <summary>The route tag of a publish, which the host answers ahead of endpoint routing (see Program.cs).</summary>
    public static readonly KeyValuePair<string, object?> PublishRoute = new("http.route", "/publish/{topic}");

    public static bool IsExcludedFromAdapter(Instrument instrument) =>
        IsHot(instrument)
        || instrument.Meter.Name is "Microsoft.AspNetCore.MemoryPool" or "Microsoft.AspNetCore.Routing"
        || instrument.Name is "http.server.active_requests" or "kestrel.queued_requests";

    public void Dispose() => _listener.Dispose();

    private static bool IsHot(Instrument instrument) => s_hot.Contains((instrument.Meter.Name, instrument.Name));

    private void OnMeasurement(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        if (instrument.Meter.Name == "MiniQueue")
        {
            _publishDuration.Observe(value);
            return;
        }

        var labels = default(RequestLabels);
        foreach (var (key, tag) in tags)
        {
            switch (key)
            {
                case "http.request.method":
                    labels = labels with { Method = tag as string };
                    break;
                case "http.route":
                    labels = labels with { Route = tag as string };
                    break;
                case "http.response.status_code":
                    labels = labels with { Status = tag is int code ? code : 0 };
                    break;
                case "network.protocol.version":
                    labels = labels with { Protocol = tag as string };
                    break;
            }
        }

        if (!_requestChildren.TryGetValue(labels, out var child))
        {
            child = _requestChildren.GetOrAdd(labels, static (key, histogram) => histogram.WithLabels(
                key.Method ?? "", key.Route ?? "", key.Status == 0 ? "" : key.Status.ToString(System.Globalization.CultureInfo.InvariantCulture), key.Protocol ?? ""),
                _requestDuration);
        }

        child.Observe(value);
    }

    private readonly record struct RequestLabels(string? Method, string? Route, int Status, string? Protocol);
}
