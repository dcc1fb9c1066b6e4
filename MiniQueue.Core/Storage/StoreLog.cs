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

    [LoggerMessage(EventId = 1054, Level = LogLevel.Error,
        Message = "A write to the log in {Directory} failed; publishes are refused until the log is reopened")]
    public static partial void WriteFailed(ILogger logger, string directory, Exception exception);

    [LoggerMessage(EventId = 1055, Level = LogLevel.Warning,
        Message = "The commit metadata of the log in {Directory} could not be written; it is tried again at the next commit, and no log segment is deleted until it is written")]
    public static partial void CommitMetadataWriteFailed(ILogger logger, string directory, Exception exception);

    [LoggerMessage(EventId = 1056, Level = LogLevel.Warning, Message = "The watermark file of the log in {Directory} could not be written; it keeps its previous value")]
    public static partial void WatermarkWriteFailed(ILogger logger, string directory, Exception exception);

    [LoggerMessage(EventId = 1057, Level = LogLevel.Warning,
        Message = "Publishes are refused: the disk of {Directory} has {AvailableBytes} bytes available, under the reserve of {ReserveBytes} bytes. Consumers still work; publishes are taken again once they have drained enough")]
    public static partial void PublishesRefusedForSpace(ILogger logger, string directory, long availableBytes, long reserveBytes);

    [LoggerMessage(EventId = 1058, Level = LogLevel.Warning,
        Message = "Publishes are taken again: the disk of {Directory} has {AvailableBytes} bytes available, above the reserve of {ReserveBytes} bytes")]
    public static partial void PublishesTakenAgain(ILogger logger, string directory, long availableBytes, long reserveBytes);
}
