namespace MiniQueue;

/// <summary>
/// A publish would have created a topic while the engine has <see cref="MiniQueueOptions.MaxTopics"/> topics already:
/// nothing was published. Publishes to existing topics go on.
/// </summary>
public sealed class MiniQueueTopicLimitException : Exception
{
    /// <summary>Creates the exception.</summary>
    public MiniQueueTopicLimitException()
        : base("The engine has as many topics as it may have.")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public MiniQueueTopicLimitException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and an inner exception.</summary>
    public MiniQueueTopicLimitException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
