using System.Diagnostics;
using System.Globalization;
using MiniQueue.Client;

namespace MiniQueue.HttpBench;

/// <summary>
/// Hand-off latency: a consumer waits on one server (<c>--consume-url</c>) while a message is published through another
/// (<c>--publish-url</c>; shared mode: two hosts on one database), one message at a time. The latency of a message is
/// from the start of its publish to its arrival at the waiting consumer: the publish and its commit, the wake-up across
/// processes (LISTEN/NOTIFY in shared mode) and the take, an upper bound of the wake-up alone (which can end before the
/// publisher has its 201). The consumer ACKs each message and waits again before the next publish.
/// </summary>
internal static class HandOffLoad
{
    public static async Task<int> RunAsync(string[] args)
    {
        var publishUrl = new Uri(BenchServer.Arg(args, "--publish-url", "https://127.0.0.1:8443"));
        var consumeUrl = new Uri(BenchServer.Arg(args, "--consume-url", publishUrl.ToString()));
        var topic = BenchServer.Arg(args, "--topic", "bench-handoff");
        var count = int.Parse(BenchServer.Arg(args, "--count", "1000"), CultureInfo.InvariantCulture);
        var warmup = int.Parse(BenchServer.Arg(args, "--warmup", "50"), CultureInfo.InvariantCulture);
        var trust = BenchServer.TrustOnly(BenchServer.Arg(args, "--trust", ""));

        using var publisher = new MiniQueueClient(new MiniQueueClientOptions { BaseAddress = publishUrl, ServerCertificateValidation = trust });
        using var consumer = new MiniQueueClient(new MiniQueueClientOptions { BaseAddress = consumeUrl, ServerCertificateValidation = trust });
        await using var subscription = await consumer.SubscribeAsync(topic);
        var payload = new byte[10];
        var latencies = new long[count];
        var clock = Stopwatch.StartNew();
        for (var i = -warmup; i < count; i++)
        {
            var receiving = subscription.ReceiveAsync().AsTask();

            // Let the receive reach the server and wait there, so that the publish finds a waiting consumer.
            await Task.Delay(2);
            var published = Stopwatch.GetTimestamp();
            await publisher.PublishAsync(topic, payload);
            await receiving.WaitAsync(TimeSpan.FromSeconds(10));
            var latency = Stopwatch.GetTimestamp() - published;
            if (i >= 0)
            {
                latencies[i] = latency;
            }

            await subscription.AckAsync();
        }

        var report = new LoadReport();
        report.Add(latencies, count);
        Console.WriteLine(report.Summarize("handoff", count, clock.Elapsed));
        return 0;
    }
}
