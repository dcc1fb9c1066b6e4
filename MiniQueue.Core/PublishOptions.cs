namespace MiniQueue;

/// <summary>How a message is published: the extensions of docs/PROTOCOL.md ("Delayed publish").</summary>
public sealed record PublishOptions
{
    /// <summary>
    /// How long after the publish the message may first be delivered. It is stored at once (the publish completes when
    /// it is durable) and waits among the topic's delayed messages, in due order, with a dackCount of 0. Zero or less:
    /// delivered as usual.
    /// </summary>
    public TimeSpan Delay { get; init; }
}
