using System.Diagnostics;
using System.Globalization;
using MiniQueue.Client;

namespace MiniQueue.HttpBench;

/// <summary>
/// Consume+ACK load: S subscriptions over C connections, each looping receive → ACK as fast as the server answers.
/// The latency of a message is the time from the command that asked for it (INIT or the previous ACK) to its arrival.
/// Uses <see cref="MiniQueueClient"/>, so the bare echo server and MiniQueue are measured with the same client.
/// The summary line also gives <c>received</c>, every message received and ACKed including the warm-up, so that the
/// caller can top the topic up again; a receive still waiting when the run ends (the topic ran dry) is cancelled.
/// <c>--max-messages N</c> ends the run early, warm-up included, once N messages were received (<c>capped=1</c>), so
/// that a topic filled with more than N never runs dry while measured; the rate is over the time actually measured.
/// </summary>
internal static class ConsumeLoad
{
    public static async Task<int> RunAsync(string[] args)
    {
        var url = new Uri(BenchServer.Arg(args, "--url", "https://127.0.0.1:8443"));
        var topic = BenchServer.Arg(args, "--topic", "bench");
        var streams = int.Parse(BenchServer.Arg(args, "--streams", "1"), CultureInfo.InvariantCulture);
        var connections = int.Parse(BenchServer.Arg(args, "--connections", "1"), CultureInfo.InvariantCulture);
        var seconds = double.Parse(BenchServer.Arg(args, "--seconds", "10"), CultureInfo.InvariantCulture);
        var warmup = double.Parse(BenchServer.Arg(args, "--warmup", "2"), CultureInfo.InvariantCulture);
        var name = BenchServer.Arg(args, "--name", "consume");
        var maxMessages = long.Parse(BenchServer.Arg(args, "--max-messages", "0"), CultureInfo.InvariantCulture);

        using var client = new MiniQueueClient(new MiniQueueClientOptions
        {
            BaseAddress = url,
            Connections = connections,
            ServerCertificateValidation = BenchServer.TrustOnly(BenchServer.Arg(args, "--trust", "")),
        });

        var subscriptions = new MiniQueueSubscription[streams];
        for (var i = 0; i < streams; i++)
        {
            subscriptions[i] = await client.SubscribeAsync(topic);
        }

        var measuring = 0;
        using var stop = new CancellationTokenSource();
        var counts = new long[streams];
        var received = new long[streams];
        long receivedInAll = 0;
        var capped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var report = new LoadReport();
        var workers = subscriptions.Select((subscription, index) => Task.Run(async () =>
        {
            var latencies = new long[1 << 20];
            var recorded = 0;
            long count = 0;
            while (!stop.IsCancellationRequested && !capped.Task.IsCompleted)
            {
                var asked = Stopwatch.GetTimestamp();
                try
                {
                    await subscription.ReceiveAsync(stop.Token);
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    break;
                }

                var latency = Stopwatch.GetTimestamp() - asked;
                await subscription.AckAsync();
                received[index]++;
                if (maxMessages > 0 && Interlocked.Increment(ref receivedInAll) >= maxMessages)
                {
                    capped.TrySetResult();
                }

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

        await Task.WhenAny(Task.Delay(TimeSpan.FromSeconds(warmup)), capped.Task);
        Volatile.Write(ref measuring, 1);
        var clock = Stopwatch.StartNew();
        await Task.WhenAny(Task.Delay(TimeSpan.FromSeconds(seconds)), capped.Task);
        Volatile.Write(ref measuring, 0);
        var elapsed = clock.Elapsed;
        await stop.CancelAsync();
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(30));
        foreach (var subscription in subscriptions)
        {
            await subscription.DisposeAsync();
        }

        Console.WriteLine(report.Summarize(name, counts.Sum(), elapsed) + string.Create(CultureInfo.InvariantCulture, $" received={received.Sum()} capped={(capped.Task.IsCompleted ? 1 : 0)}"));
        return 0;
    }
}
