namespace MiniQueue.Engine;

/// <summary>The policy one topic runs under, resolved from <see cref="MiniQueueOptions"/> when the engine creates the topic.</summary>
/// <param name="LeaseTicks">How long a consumer may hold a message, in ticks; 0 for no lease.</param>
/// <param name="MaxDeliveries">How many times a message is delivered at most; 0 for no limit.</param>
/// <param name="DeadLetterTopic">Where a message goes instead of its delivery number <c>MaxDeliveries + 1</c>.</param>
internal sealed record TopicPolicy(long LeaseTicks, int MaxDeliveries, string? DeadLetterTopic)
{
    /// <summary>The original behaviour: no lease, no limit.</summary>
    public static TopicPolicy None { get; } = new(0, 0, null);

    /// <summary>The suffix of a topic's default dead-letter topic.</summary>
    public const string DeadLetterSuffix = ".dead";

    /// <summary>
    /// A resolver of topic policies from a copy of the options' settings (options may change after the engine opened).
    /// </summary>
    public static Func<string, TopicPolicy> Resolver(MiniQueueOptions options)
    {
        var lease = options.Lease;
        var maxDeliveries = options.MaxDeliveries;
        var policies = options.TopicPolicies
            .Select(static policy => new MiniQueueTopicPolicy
            {
                Topics = policy.Topics,
                Lease = policy.Lease,
                MaxDeliveries = policy.MaxDeliveries,
                DeadLetterTopic = policy.DeadLetterTopic,
            })
            .ToArray();
        return lease is null && maxDeliveries is null && policies.Length == 0
            ? static _ => None
            : topic => Resolve(lease, maxDeliveries, policies, topic);
    }

    /// <summary>The policy of <paramref name="topic"/>: its first matching entry of the topic policies over the defaults.</summary>
    private static TopicPolicy Resolve(TimeSpan? lease, int? maxDeliveries, MiniQueueTopicPolicy[] policies, string topic)
    {
        string? deadLetter = null;
        foreach (var policy in policies)
        {
            if (policy.Matches(topic))
            {
                lease = policy.Lease ?? lease;
                maxDeliveries = policy.MaxDeliveries ?? maxDeliveries;
                deadLetter = policy.DeadLetterTopic;
                break;
            }
        }

        if (lease is null && maxDeliveries is null)
        {
            return None;
        }

        deadLetter ??= DeadLetterTopicOf(topic);
        if (deadLetter == topic)
        {
            // A topic cannot be its own dead-letter topic: its messages are not limited.
            deadLetter = null;
        }

        // A topic whose default dead-letter name is too long cannot have one: its messages are not limited.
        return new TopicPolicy(lease?.Ticks ?? 0, deadLetter is null ? 0 : maxDeliveries ?? 0, deadLetter);
    }

    /// <summary>The default dead-letter topic of <paramref name="topic"/>, or null when that name would be invalid.</summary>
    public static string? DeadLetterTopicOf(string topic) =>
        TopicName.IsValid(topic + DeadLetterSuffix) ? topic + DeadLetterSuffix : null;
}
