using System.Diagnostics;
using System.Globalization;

namespace MiniQueue.HttpBench;

/// <summary>Latencies of one load run, in Stopwatch ticks, and the summary line the script parses.</summary>
internal sealed class LoadReport
{
    private readonly List<long[]> _parts = [];

    public void Add(long[] latencies, int count) => _parts.Add(latencies[..count]);

    public string Summarize(string name, long operations, TimeSpan elapsed)
    {
        var all = _parts.SelectMany(static part => part).ToArray();
        Array.Sort(all);
        var perSecond = operations / elapsed.TotalSeconds;
        return string.Create(CultureInfo.InvariantCulture,
            $"RESULT {name} ops={operations} seconds={elapsed.TotalSeconds:F2} rate={perSecond:F0} " +
            $"p50_us={Percentile(all, 0.50):F0} p90_us={Percentile(all, 0.90):F0} p99_us={Percentile(all, 0.99):F0} " +
            $"p999_us={Percentile(all, 0.999):F0} max_us={Percentile(all, 1.0):F0}");
    }

    private static double Percentile(long[] sorted, double quantile)
    {
        if (sorted.Length == 0)
        {
            return double.NaN;
        }

        var index = (int)Math.Min(sorted.Length - 1, Math.Ceiling(quantile * sorted.Length) - 1);
        return sorted[Math.Max(0, index)] * 1_000_000.0 / Stopwatch.Frequency;
    }
}
