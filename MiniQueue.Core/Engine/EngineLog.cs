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
}
