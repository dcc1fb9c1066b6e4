using System.Diagnostics;
using MiniQueue.Client;
using MiniQueue.Samples;

// Probe: how fast a server publishes and how fast it serves consume+ACK, as this client sees it (the counterpart of
// the Go miniqueue's examples/bench_consume). Publishers share one counter of messages to send; consumers each have
// a subscription and share one counter of messages to take, so that together they take exactly --messages.
const string Usage = """
    Usage: Probe [options]

    Publishes --messages messages of --size bytes with --publishers concurrent publishers (after purging the
    topic), then consumes and ACKs them with --consumers subscriptions, and prints messages/s for each phase.
    With --no-publish it only consumes and ACKs --messages messages that are already there.

    Options:
      --topic NAME        the topic (default probe); purged before publishing
      --messages N        how many messages (default 10000)
      --size BYTES        each message's size (default 100)
      --publishers P      concurrent publishes (default 16)
      --consumers C       subscriptions consuming at once (default 1)
      --connections N     HTTP/2 connections the client spreads requests over (default 1)
      --no-publish        do not purge or publish; consume what is there

    """ + Example.CommonUsage;

string[] options = ["messages", "size", "publishers", "consumers", "connections"];
return await Example.RunAsync(args, Usage, options, flags: ["no-publish"], async (command, cancellationToken) =>
{
    var topic = command.Get("topic", "probe");
    var messages = command.GetInt("messages", 10_000, minimum: 1);
    var size = command.GetInt("size", 100, minimum: 0);
    var publishers = command.GetInt("publishers", 16, minimum: 1);
    var consumers = command.GetInt("consumers", 1, minimum: 1);
    var connections = command.GetInt("connections", 1, minimum: 1);
    using var client = Example.CreateClient(command, connections);

    if (!command.Has("no-publish"))
    {
        await client.PurgeAsync(topic, cancellationToken);
        var payload = new byte[size];
        Random.Shared.NextBytes(payload);
        var next = 0;
        var publishClock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, publishers).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) <= messages)
            {
                await client.PublishAsync(topic, payload, cancellationToken);
            }
        }, cancellationToken)));
        Report("publish", messages, $"of {size} bytes with {publishers} publishers", publishClock.Elapsed);
    }

    // Subscriptions open before the clock starts; the first receive of each sends INIT.
    var subscriptions = new List<MiniQueueSubscription>();
    try
    {
        for (var i = 0; i < consumers; i++)
        {
            subscriptions.Add(await client.SubscribeAsync(topic, cancellationToken));
        }

        var taken = 0;
        var otherSize = 0;
        var consumeClock = Stopwatch.StartNew();
        await Task.WhenAll(subscriptions.Select(subscription => Task.Run(async () =>
        {
            try
            {
                while (Interlocked.Increment(ref taken) <= messages)
                {
                    var message = await subscription.ReceiveAsync(cancellationToken);
                    if (message.Body.Length != size)
                    {
                        Interlocked.Increment(ref otherSize);
                    }

                    await subscription.AckAsync(cancellationToken);
                }
            }
            finally
            {
                // After an ACK the server already sends this subscription the next message. When the others have
                // claimed the rest, that message may be one another subscription waits for: ending this one now
                // returns it to the front for them (kept open, it would hold it until they all finished: never).
                await subscription.DisposeAsync();
            }
        }, cancellationToken)));
        Report("consume+ACK", messages, $"with {consumers} consumers", consumeClock.Elapsed);
        if (otherSize > 0)
        {
            Console.WriteLine($"note: {otherSize} of the messages consumed were not {size} bytes: the topic had other messages");
        }
    }
    finally
    {
        await Task.WhenAll(subscriptions.Select(subscription => subscription.DisposeAsync().AsTask()));
    }

    return 0;
});

static void Report(string phase, int messages, string how, TimeSpan elapsed) =>
    Console.WriteLine($"{phase}: {messages} messages {how} in {elapsed.TotalSeconds:0.000} s: {messages / elapsed.TotalSeconds:0} msg/s");
