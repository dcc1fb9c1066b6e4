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

    /// <summary>
    /// A key that makes the publish idempotent: a publish to the same topic that repeats a key published within the
    /// topic's window (<see cref="MiniQueueOptions.IdempotencyWindow"/>, 2 minutes by default) enqueues nothing and
    /// reports <see cref="PublishResult.IsDuplicate"/>. 1 to 255 bytes of UTF-8; null for none.
    /// </summary>
    public string? IdempotencyKey { get; init; }

    /// <summary>The most UTF-8 bytes an idempotency key may have.</summary>
    public const int MaxIdempotencyKeyBytes = 255;
}

/// <summary>What a publish did.</summary>
/// <param name="IsDuplicate">
/// The publish repeated an idempotency key published to the topic within its window: nothing was enqueued (the first
/// publish with the key is durable).
/// </param>
public readonly record struct PublishResult(bool IsDuplicate);
