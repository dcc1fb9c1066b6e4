using System.Text;
using MiniQueue.Samples;

// Echo: publishes a line, consumes it back from the same topic and prints it, a round trip through the queue
// (the counterpart of the Go miniqueue's examples/echo). One subscription serves every line: receive, print, ACK.
const string Usage = """
    Usage: Echo [options] [text...]

    Publishes the text (or, without text, each line of standard input), consumes it back from the topic and
    prints what it consumed. Use a topic of its own: what is already queued there is consumed first.

    Options:
      --topic NAME     the topic (default echo)

    """ + Example.CommonUsage;

return await Example.RunAsync(args, Usage, options: [], flags: [], async (command, cancellationToken) =>
{
    var topic = command.Get("topic", "echo");
    using var client = Example.CreateClient(command);
    var subscription = await client.SubscribeAsync(topic, cancellationToken);
    try
    {
        if (command.Arguments.Count > 0)
        {
            await EchoAsync(string.Join(' ', command.Arguments));
            return 0;
        }

        // Console.In does not stop a pending read when cancelled, so the wait is what Ctrl+C cancels.
        while (await Console.In.ReadLineAsync(cancellationToken).AsTask().WaitAsync(cancellationToken) is { } line)
        {
            await EchoAsync(line);
        }

        return 0;
    }
    finally
    {
        await subscription.DisposeAsync();
    }

    async Task EchoAsync(string line)
    {
        await client.PublishAsync(topic, Encoding.UTF8.GetBytes(line), cancellationToken);
        var message = await subscription.ReceiveAsync(cancellationToken);
        Console.WriteLine(Encoding.UTF8.GetString(message.Body.Span));
        await subscription.AckAsync(cancellationToken);
    }
});
