using Microsoft.Extensions.Logging;
using MiniQueue.Storage;

namespace MiniQueue.Engine;

/// <summary>The engine's log messages. Event ids 1000–1099 belong to MiniQueue.Core.</summary>
internal static partial class EngineLog
{
    [LoggerMessage(EventId = 1000, Level = LogLevel.Warning,
        Message = "Could not log a {Kind} record for message {MessageId} of topic {Topic}; after a crash the message may be delivered again")]
    public static partial void RecordNotLogged(ILogger logger, LogRecordKind kind, long messageId, string topic, Exception exception);

    [LoggerMessage(EventId = 1001, Level = LogLevel.Information,
        Message = "Recovered {Topics} topics with {Messages} messages ({Held} that consumers held returned to the front) from {Records} records")]
    public static partial void Recovered(ILogger logger, int topics, int messages, int held, long records);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Error, Message = "Publishing to topic {Topic} failed: the store did not take the message")]
    public static partial void PublishFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Debug, Message = "Compacted the log: its start moved from {From} to {To}")]
    public static partial void Compacted(ILogger logger, long from, long to);

    [LoggerMessage(EventId = 1004, Level = LogLevel.Warning, Message = "Compacting the log failed; it will be tried again")]
    public static partial void CompactionFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1005, Level = LogLevel.Error,
        Message = "{Count} messages of topic {Topic} were lost: a commit failed before they were durable and their bodies were not in memory")]
    public static partial void MessagesLost(ILogger logger, int count, string topic);

    [LoggerMessage(EventId = 1006, Level = LogLevel.Information,
        Message = "The lease on message {MessageId} of topic {Topic} passed before its consumer settled it; it returned to the front")]
    public static partial void LeaseExpired(ILogger logger, string topic, long messageId);

    [LoggerMessage(EventId = 1007, Level = LogLevel.Warning, Message = "A callback on the lease token of a delivery of topic {Topic} failed")]
    public static partial void LeaseCallbackFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(EventId = 1008, Level = LogLevel.Warning,
        Message = "Message {MessageId} of topic {Topic} was delivered {Deliveries} times, the most allowed; it moved to {DeadLetterTopic}")]
    public static partial void DeadLettered(ILogger logger, string topic, long messageId, int deliveries, string deadLetterTopic);

    [LoggerMessage(EventId = 1009, Level = LogLevel.Information, Message = "Redrive moved {Count} messages from {DeadLetterTopic} back to {Topic}")]
    public static partial void Redriven(ILogger logger, int count, string deadLetterTopic, string topic);

    [LoggerMessage(EventId = 1010, Level = LogLevel.Error, Message = "Moving messages of topic {Topic} to its dead-letter topic failed; they stay at its front")]
    public static partial void DeadLetterFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(EventId = 1011, Level = LogLevel.Debug,
        Message = "A publish to topic {Topic} repeated the idempotency key of an earlier one within its window; nothing was enqueued")]
    public static partial void Duplicate(ILogger logger, string topic);
}
