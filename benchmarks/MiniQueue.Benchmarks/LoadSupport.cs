using System.Diagnostics;
using System.Globalization;

namespace MiniQueue.Benchmarks;

/// <summary>Helpers shared by the load runs: argument parsing, temp folders, latency percentiles, tables.</summary>
internal static class LoadSupport
{
    public static int Option(string[] args, string name, int fallback)
    {
        var index = Array.IndexOf(args, "--" + name);
        return index >= 0 && index + 1 < args.Length ? int.Parse(args[index + 1], CultureInfo.InvariantCulture) : fallback;
    }

    public static string? Option(string[] args, string name)
    {
        var index = Array.IndexOf(args, "--" + name);
        return index >= 0 && index + 1 < args.Length ? args[index + 1] : null;
    }

    /// <summary>A fresh folder for a data directory, under --dir (default: the temp folder), deleted afterwards.</summary>
    public static string NewDirectory(string[] args, string name)
    {
        var root = Option(args, "dir") ?? Path.Combine(Path.GetTempPath(), "miniqueue-bench");
        var path = Path.Combine(root, $"{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        return path;
    }

    public static void Delete(string path)
    {
        try
        {
            Directory.Delete(path, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    public static double Percentile(List<long> sortedTicks, double percentile) =>
        sortedTicks.Count == 0 ? 0 : sortedTicks[Math.Min(sortedTicks.Count - 1, (int)(percentile * sortedTicks.Count))] * 1000.0 / Stopwatch.Frequency;

    public static string Format(double value) => value.ToString("N0", CultureInfo.InvariantCulture);

    public static string Format2(double value) => value.ToString("N2", CultureInfo.InvariantCulture);
}

/// <summary>The result of a timed run of concurrent workers, each recording the latency of every operation.</summary>
internal sealed record LoadResult(long Operations, TimeSpan Elapsed, List<long> SortedLatencyTicks)
{
    public double PerSecond => Operations / Elapsed.TotalSeconds;

    public double P50Milliseconds => LoadSupport.Percentile(SortedLatencyTicks, 0.50);

    public double P99Milliseconds => LoadSupport.Percentile(SortedLatencyTicks, 0.99);

    /// <summary>Runs <paramref name="workers"/> loops of <paramref name="operation"/> until <paramref name="total"/> operations are done.</summary>
    public static async Task<LoadResult> MeasureCountAsync(int workers, long total, Func<int, CancellationToken, Task> operation)
    {
        var remaining = total;
        using var done = new CancellationTokenSource();
        var latencies = Enumerable.Range(0, workers).Select(_ => new List<long>()).ToArray();
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, workers).Select(worker => Task.Run(async () =>
        {
            while (!done.IsCancellationRequested)
            {
                var started = Stopwatch.GetTimestamp();
                try
                {
                    await operation(worker, done.Token);
                }
                catch (OperationCanceledException) when (done.IsCancellationRequested)
                {
                    break;
                }

                latencies[worker].Add(Stopwatch.GetTimestamp() - started);
                if (Interlocked.Decrement(ref remaining) == 0)
                {
                    await done.CancelAsync();
                }
            }
        })));
        var elapsed = clock.Elapsed;
        var all = latencies.SelectMany(list => list).ToList();
        all.Sort();
        return new LoadResult(all.Count, elapsed, all);
    }

    /// <summary>
    /// Runs <paramref name="workers"/> loops of <paramref name="operation"/> for a warm-up, then for <paramref name="duration"/>;
    /// the token passed to the operation is cancelled at the end (an operation that waits must honour it).
    /// </summary>
    public static async Task<LoadResult> MeasureAsync(int workers, TimeSpan duration, Func<int, CancellationToken, Task> operation)
    {
        var measuring = 0;
        using var stop = new CancellationTokenSource();
        var latencies = Enumerable.Range(0, workers).Select(_ => new List<long>()).ToArray();
        var tasks = Enumerable.Range(0, workers).Select(worker => Task.Run(async () =>
        {
            var mine = latencies[worker];
            while (!stop.IsCancellationRequested)
            {
                var started = Stopwatch.GetTimestamp();
                try
                {
                    await operation(worker, stop.Token);
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    break;
                }

                if (Volatile.Read(ref measuring) == 1)
                {
                    mine.Add(Stopwatch.GetTimestamp() - started);
                }
            }
        })).ToArray();

        await Task.Delay(TimeSpan.FromSeconds(1));
        var clock = Stopwatch.StartNew();
        Volatile.Write(ref measuring, 1);
        await Task.Delay(duration);
        Volatile.Write(ref measuring, 0);
        var elapsed = clock.Elapsed;
        await stop.CancelAsync();
        await Task.WhenAll(tasks);
        var all = latencies.SelectMany(list => list).ToList();
        all.Sort();
        return new LoadResult(all.Count, elapsed, all);
    }
}
