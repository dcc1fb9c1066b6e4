using Microsoft.Extensions.Logging;

namespace MiniQueue.PostgreSql;

/// <summary>Shared mode's log messages. Event ids 1300–1399 belong to MiniQueue.PostgreSql.</summary>
internal static partial class PostgreSqlLog
{
    [LoggerMessage(EventId = 1300, Level = LogLevel.Warning,
        Message = "Listening for MiniQueue's notifications failed; waiting consumers look again once the connection is back")]
    public static partial void ListenFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1301, Level = LogLevel.Warning, Message = "The heartbeat of this MiniQueue process failed; it is tried again")]
    public static partial void HeartbeatFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 1302, Level = LogLevel.Warning,
        Message = "{Count} messages held by processes that stopped beating returned to the front of their topics")]
    public static partial void Reclaimed(ILogger logger, int count);

    [LoggerMessage(EventId = 1303, Level = LogLevel.Error, Message = "Publishing to topic {Topic} failed: the database did not take the message")]
    public static partial void PublishFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(EventId = 1304, Level = LogLevel.Information,
        Message = "The lease on message {MessageId} of topic {Topic} passed before its consumer settled it; it returned to the front")]
    public static partial void LeaseExpired(ILogger logger, string topic, long messageId);

    [LoggerMessage(EventId = 1305, Level = LogLevel.Warning,
        Message = "{Count} messages of topic {Topic} were delivered the most times allowed; they moved to {DeadLetterTopic}")]
    public static partial void DeadLettered(ILogger logger, string topic, int count, string deadLetterTopic);

    [LoggerMessage(EventId = 1306, Level = LogLevel.Information, Message = "Redrive moved {Count} messages from {DeadLetterTopic} back to {Topic}")]
    public static partial void Redriven(ILogger logger, int count, string deadLetterTopic, string topic);

    [LoggerMessage(EventId = 1307, Level = LogLevel.Warning, Message = "A callback on the lease token of a delivery of topic {Topic} failed")]
    public static partial void LeaseCallbackFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(EventId = 1308, Level = LogLevel.Warning,
        Message = "{Count} ACKs could not reach the database; they are tried again (their messages stay held until then)")]
    public static partial void AckFailed(ILogger logger, int count, Exception exception);

    [LoggerMessage(EventId = 1309, Level = LogLevel.Warning,
        Message = "After the database was away, {Count} messages it still had as held by this process, which no consumer holds, returned to the front")]
    public static partial void Reconciled(ILogger logger, int count);
}
