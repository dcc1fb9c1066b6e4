using System.Diagnostics;
using System.Text;
using MiniQueue.Samples;

// Retry: exponential backoff with DACK (the counterpart of the Go miniqueue's examples/exponential_backoff). A failed
// message is delayed by base * 2^dackCount seconds (at most --max-delay); the server counts the DACKs in the
// message's dackCount, so the consumer keeps no state of its own. After --max-attempts the message is given up:
// published to a dead-letter topic, then ACKed.
const string Usage = """
    Usage: Retry [options]

    Consumes a topic with a handler that fails, and retries each failed message with exponential backoff: DACK
    with a delay of base * 2^dackCount seconds, capped. After --max-attempts failed attempts the message goes to
    the dead-letter topic and is ACKed. Prints every attempt with its dackCount. Stops after --count messages are
    done (handled or dead-lettered), or on Ctrl+C.

    Options:
      --topic NAME          the topic (default tasks)
      --dead-topic NAME     where given-up messages go (default <topic>.dead)
      --count N             stop after N messages are done; 0 runs until Ctrl+C (default 0)
      --publish N           first publish N messages "task 1" .. "task N" (default 0)
      --fail-first K        the handler fails the first K attempts of every message (default 2)
      --fail-rate P         ... and any attempt with probability P, from 0 to 1 (default 0)
      --max-attempts N      give up after N failed attempts (default 4)
      --base-delay SECONDS  the first retry's delay (default 1)
      --max-delay SECONDS   the longest delay (default 30)

    The protocol counts delays in whole seconds, so each delay is rounded up to one.

    """ + Example.CommonUsage;

string[] options = ["dead-topic", "count", "publish", "fail-first", "fail-rate", "max-attempts", "base-delay", "max-delay"];
return await Example.RunAsync(args, Usage, options, flags: [], async (command, cancellationToken) =>
{
    var topic = command.Get("topic", "tasks");
    var deadTopic = command.Get("dead-topic", topic + ".dead");
    var count = command.GetInt("count", 0, minimum: 0);
    var publish = command.GetInt("publish", 0, minimum: 0);
    var failFirst = command.GetInt("fail-first", 2, minimum: 0);
    var failRate = command.GetDouble("fail-rate", 0, minimum: 0, maximum: 1);
    var maxAttempts = command.GetInt("max-attempts", 4, minimum: 1);
    var baseDelay = command.GetDouble("base-delay", 1, minimum: 0, maximum: 86_400);
    var maxDelay = command.GetDouble("max-delay", 30, minimum: 0, maximum: 86_400);
    using var client = Example.CreateClient(command);

    for (var i = 1; i <= publish; i++)
    {
        await client.PublishAsync(topic, Encoding.UTF8.GetBytes($"task {i}"), cancellationToken);
    }

    var clock = Stopwatch.StartNew();
    void Log(string text) => Console.WriteLine($"[{clock.Elapsed.TotalSeconds,7:0.00}s] {text}");

    // The handler: fails the first --fail-first attempts of each message, and at random with --fail-rate.
    bool Handle(int attempt) => attempt > failFirst && Random.Shared.NextDouble() >= failRate;

    var subscription = await client.SubscribeAsync(topic, cancellationToken);
    var (handled, deadLettered) = (0, 0);
    try
    {
        while (count == 0 || handled + deadLettered < count)
        {
            var message = await subscription.ReceiveAsync(cancellationToken);
            var text = Encoding.UTF8.GetString(message.Body.Span);
            var attempt = message.DackCount + 1;
            if (Handle(attempt))
            {
                Log($"{text}: attempt {attempt} (dackCount {message.DackCount}) succeeded; ACK");
                await subscription.AckAsync(cancellationToken);
                handled++;
            }
            else if (attempt >= maxAttempts)
            {
                // Publish before the ACK: if the process dies in between, the message is retried, not lost.
                await client.PublishAsync(deadTopic, message.Body, cancellationToken);
                await subscription.AckAsync(cancellationToken);
                Log($"{text}: attempt {attempt} (dackCount {message.DackCount}) failed; giving up after {attempt} attempts: moved to {deadTopic}, ACK");
                deadLettered++;
            }
            else
            {
                var seconds = (int)Math.Ceiling(Math.Min(baseDelay * Math.Pow(2, message.DackCount), maxDelay));
                Log($"{text}: attempt {attempt} (dackCount {message.DackCount}) failed; DACK {seconds}s");
                await subscription.DackAsync(TimeSpan.FromSeconds(seconds), cancellationToken);
            }
        }
    }
    finally
    {
        await subscription.DisposeAsync();
    }

    Console.WriteLine($"done: {handled} handled, {deadLettered} dead-lettered to {deadTopic}");
    return 0;
});
