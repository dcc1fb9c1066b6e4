namespace MiniQueue.Client;

/// <summary>How a message is published: the server's extensions (its PROTOCOL.md, "Topic policies").</summary>
public sealed record MiniQueuePublishOptions
{
    /// <summary>Deliver no earlier than this after the publish; rounded up to whole seconds. Zero: at once.</summary>
    public TimeSpan Delay { get; init; }

    /// <summary>
    /// A key that makes the publish idempotent: a repeat with the same key on the same topic within the server's window
    /// (2 minutes by default) enqueues nothing. 1 to 255 bytes.
    /// </summary>
    public string? IdempotencyKey { get; init; }
}

/// <summary>What a publish did.</summary>
/// <param name="IsDuplicate">It repeated an idempotency key the server had published within its window: nothing was enqueued.</param>
public readonly record struct MiniQueuePublishResult(bool IsDuplicate);
