namespace MiniQueue;

/// <summary>
/// Settings for the topics that <see cref="Topics"/> names, overriding the defaults in <see cref="MiniQueueOptions"/>.
/// A setting left <see langword="null"/> keeps the default. See docs/PROTOCOL.md ("Topic policies") for the rules.
/// </summary>
public sealed class MiniQueueTopicPolicy
{
    /// <summary>
    /// The topics the policy applies to: a topic name (<c>orders</c>), or a prefix ending in <c>*</c>
    /// (<c>orders.*</c>; <c>*</c> alone matches every topic). The first policy in
    /// <see cref="MiniQueueOptions.TopicPolicies"/> that matches a topic is the one it gets.
    /// </summary>
    public string Topics { get; set; } = "*";

    /// <summary>How long a consumer may hold a message of these topics before it returns to the front; see <see cref="MiniQueueOptions.Lease"/>.</summary>
    public TimeSpan? Lease { get; set; }

    /// <summary>How many times a message of these topics is delivered at most; see <see cref="MiniQueueOptions.MaxDeliveries"/>.</summary>
    public int? MaxDeliveries { get; set; }

    /// <summary>Where messages of these topics go after <see cref="MaxDeliveries"/>; default: the topic's name with <c>.dead</c> appended.</summary>
    public string? DeadLetterTopic { get; set; }

    /// <summary>How long a publish's idempotency key keeps a repeat from enqueuing; see <see cref="MiniQueueOptions.IdempotencyWindow"/>.</summary>
    public TimeSpan? IdempotencyWindow { get; set; }

    /// <summary>Whether <paramref name="topic"/> is one of the topics <see cref="Topics"/> names.</summary>
    public bool Matches(string topic) => TopicName.MatchesPattern(Topics, topic);

    internal void Validate(int index, string paramName)
    {
        var name = $"{nameof(MiniQueueOptions.TopicPolicies)}[{index}]";
        if (string.IsNullOrEmpty(Topics) || Topics.IndexOf('*') is var star && star >= 0 && star != Topics.Length - 1)
        {
            throw new ArgumentException(
                $"{name}.{nameof(Topics)} must be a topic name or a prefix ending in '*', not '{Topics}'.", paramName);
        }

        MiniQueueOptions.ValidateLease(Lease, $"{name}.{nameof(Lease)}");
        MiniQueueOptions.ValidateMaxDeliveries(MaxDeliveries, $"{name}.{nameof(MaxDeliveries)}");
        MiniQueueOptions.ValidateWindow(IdempotencyWindow, $"{name}.{nameof(IdempotencyWindow)}");
        if (DeadLetterTopic is { } dead && !TopicName.IsValid(dead))
        {
            throw new ArgumentException($"{name}.{nameof(DeadLetterTopic)} '{dead}' is not a valid topic name.", paramName);
        }
    }
}
