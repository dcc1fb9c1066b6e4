using Microsoft.Extensions.Logging;

namespace MiniQueue.Storage;

/// <summary>The durable store's log messages (event ids 1050–1099 of MiniQueue.Core's range).</summary>
internal static partial class StoreLog
{
    [LoggerMessage(EventId = 1050, Level = LogLevel.Error,
        Message = "A commit to the log in {Directory} failed; publishes are refused until the log is reopened")]
    public static partial void CommitFailed(ILogger logger, string directory, Exception exception);

    [LoggerMessage(EventId = 1051, Level = LogLevel.Warning, Message = "The log in {Directory} could not be reopened yet")]
    public static partial void ReopenFailed(ILogger logger, string directory, Exception exception);

    [LoggerMessage(EventId = 1052, Level = LogLevel.Information, Message = "The log in {Directory} was reopened at its last commit ({Address})")]
    public static partial void Recovered(ILogger logger, string directory, long address);

    [LoggerMessage(EventId = 1053, Level = LogLevel.Error, Message = "The final commit to the log in {Directory} failed")]
    public static partial void FinalCommitFailed(ILogger logger, string directory, Exception exception);
}
