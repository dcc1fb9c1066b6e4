namespace MiniQueue.Engine;

/// <summary>The policy one topic runs under, resolved from <see cref="MiniQueueOptions"/> when the engine creates the topic.</summary>
/// <param name="LeaseTicks">How long a consumer may hold a message, in ticks; 0 for no lease.</param>
/// <param name="MaxDeliveries">How many times a message is delivered at most; 0 for no limit.</param>
/// <param name="DeadLetterTopic">Where a message goes instead of its delivery number <c>MaxDeliveries + 1</c>.</param>
/// <param name="IdempotencyWindowTicks">How long a publish's idempotency key keeps a repeat from enqueuing, in ticks.</param>
internal sealed record TopicPolicy(long LeaseTicks, int MaxDeliveries, string? DeadLetterTopic, long IdempotencyWindowTicks)
{
    /// <summary>The suffix of a topic's default dead-letter topic.</summary>
    public const string DeadLetterSuffix = ".dead";

    /// <summary>
    /// A resolver of topic policies from a copy of the options' settings (options may change after the engine opened).
    /// </summary>
    public static Func<string, TopicPolicy> Resolver(MiniQueueOptions options)
    {
        var defaults = new MiniQueueTopicPolicy
        {
            Lease = options.Lease,
            MaxDeliveries = options.MaxDeliveries,
            IdempotencyWindow = options.IdempotencyWindow,
        };
        var policies = options.TopicPolicies
            .Select(static policy => new MiniQueueTopicPolicy
            {
                Topics = policy.Topics,
                Lease = policy.Lease,
                MaxDeliveries = policy.MaxDeliveries,
                DeadLetterTopic = policy.DeadLetterTopic,
                IdempotencyWindow = policy.IdempotencyWindow,
            })
            .ToArray();
        if (defaults.Lease is null && defaults.MaxDeliveries is null && policies.Length == 0)
        {
            // The original behaviour for every topic: one policy object for all.
            var plain = new TopicPolicy(0, 0, null, options.IdempotencyWindow.Ticks);
            return _ => plain;
        }

        return topic => Resolve(defaults, policies, topic);
    }

    /// <summary>The policy of <paramref name="topic"/>: its first matching entry of the topic policies over the defaults.</summary>
    private static TopicPolicy Resolve(MiniQueueTopicPolicy defaults, MiniQueueTopicPolicy[] policies, string topic)
    {
        var lease = defaults.Lease;
        var maxDeliveries = defaults.MaxDeliveries;
        var window = defaults.IdempotencyWindow!.Value;
        string? deadLetter = null;
        foreach (var policy in policies)
        {
            if (policy.Matches(topic))
            {
                lease = policy.Lease ?? lease;
                maxDeliveries = policy.MaxDeliveries ?? maxDeliveries;
                deadLetter = policy.DeadLetterTopic;
                window = policy.IdempotencyWindow ?? window;
                break;
            }
        }

        // A topic cannot be its own dead-letter topic, and one whose default dead-letter name would be too long has
        // none: the messages of such a topic are not limited.
        deadLetter ??= DeadLetterTopicOf(topic);
        if (deadLetter == topic)
        {
            deadLetter = null;
        }

        return new TopicPolicy(lease?.Ticks ?? 0, deadLetter is null ? 0 : maxDeliveries ?? 0, deadLetter, window.Ticks);
    }

    /// <summary>The default dead-letter topic of <paramref name="topic"/>, or null when that name would be invalid.</summary>
    public static string? DeadLetterTopicOf(string topic) =>
        TopicName.IsValid(topic + DeadLetterSuffix) ? topic + DeadLetterSuffix : null;
}

/// <summary>What <see cref="TopicQueue.TryPublish"/> did.</summary>
internal enum PublishStep
{
    /// <summary>The topic was retired: look it up again.</summary>
    Retired,

    /// <summary>Appended; the completion says when it is durable.</summary>
    Published,

    /// <summary>A repeat of an idempotency key the topic remembers: nothing was appended.</summary>
    Duplicate,

    /// <summary>A repeat of a key whose first publish is not durable yet: wait for it.</summary>
    AwaitOriginal,
}

/// <summary>A publish with an idempotency key, and whether it turned out to be a duplicate.</summary>
internal sealed class KeyedPublish(string key, byte[] utf8)
{
    public string Key { get; } = key;

    public byte[] Utf8 { get; } = utf8;

    public bool IsDuplicate { get; set; }
}
