using System.Diagnostics;
using System.Globalization;
using MiniQueue.Client;

namespace MiniQueue.HttpBench;

/// <summary>
/// Publish load with latency percentiles (h2load gives the headline rate): C connections × M concurrent publishers
/// per connection, each looping publish → 201, as fast as the server answers or paced to <c>--rate</c> in all.
/// </summary>
internal static class PublishLoad
{
    public static async Task<int> RunAsync(string[] args)
    {
        var url = new Uri(BenchServer.Arg(args, "--url", "https://127.0.0.1:8443"));
        var topic = BenchServer.Arg(args, "--topic", "bench-publish");
        var connections = int.Parse(BenchServer.Arg(args, "--connections", "12"), CultureInfo.InvariantCulture);
        var perConnection = int.Parse(BenchServer.Arg(args, "--streams", "10"), CultureInfo.InvariantCulture);
        var size = int.Parse(BenchServer.Arg(args, "--size", "100"), CultureInfo.InvariantCulture);
        var seconds = double.Parse(BenchServer.Arg(args, "--seconds", "10"), CultureInfo.InvariantCulture);
        var warmup = double.Parse(BenchServer.Arg(args, "--warmup", "2"), CultureInfo.InvariantCulture);
        var name = BenchServer.Arg(args, "--name", "publish");

        // --rate R paces the publishers to R publishes a second in all (0: as fast as the server answers).
        var rate = double.Parse(BenchServer.Arg(args, "--rate", "0"), CultureInfo.InvariantCulture);

        using var client = new MiniQueueClient(new MiniQueueClientOptions
        {
            BaseAddress = url,
            Connections = connections,
            ServerCertificateValidation = BenchServer.TrustOnly(BenchServer.Arg(args, "--trust", "")),
        });

        var payload = new byte[size];
        var measuring = 0;
        var stop = 0;
        var workerCount = connections * perConnection;
        var counts = new long[workerCount];
        var report = new LoadReport();
        var workers = Enumerable.Range(0, workerCount).Select(index => Task.Run(async () =>
        {
            var latencies = new long[1 << 20];
            var recorded = 0;
            long count = 0;
            var interval = rate > 0 ? TimeSpan.FromSeconds(workerCount / rate) : TimeSpan.Zero;
            var paced = Stopwatch.StartNew();
            long sent = 0;
            while (Volatile.Read(ref stop) == 0)
            {
                if (rate > 0 && interval * ++sent - paced.Elapsed is { Ticks: > 0 } ahead)
                {
                    await Task.Delay(ahead);
                }

                var started = Stopwatch.GetTimestamp();
                await client.PublishAsync(topic, payload);
                var latency = Stopwatch.GetTimestamp() - started;
                if (Volatile.Read(ref measuring) == 1)
                {
                    count++;
                    if (recorded < latencies.Length)
                    {
                        latencies[recorded++] = latency;
                    }
                }
            }

            counts[index] = count;
            lock (report)
            {
                report.Add(latencies, recorded);
            }
        })).ToArray();

        await Task.Delay(TimeSpan.FromSeconds(warmup));
        Volatile.Write(ref measuring, 1);
        var clock = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(seconds));
        Volatile.Write(ref measuring, 0);
        var elapsed = clock.Elapsed;
        Volatile.Write(ref stop, 1);
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(30));

        Console.WriteLine(report.Summarize(name, counts.Sum(), elapsed));
        return 0;
    }
}
