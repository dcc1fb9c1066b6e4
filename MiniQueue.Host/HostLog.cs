namespace MiniQueue.Host;

/// <summary>The standalone host's log messages (event ids 3000–3099).</summary>
internal static partial class HostLog
{
    public const string Category = "MiniQueue.Host";

    [LoggerMessage(EventId = 3000, Level = LogLevel.Warning, Message = "no DB path specified, using default {DataDirectory}")]
    public static partial void DefaultDataDirectory(ILogger logger, string dataDirectory);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Warning,
        Message = "The TLS certificate {Default} does not exist, so a self-signed one for localhost, 127.0.0.1 and ::1 is used: {Certificate} (key {Key}); clients can trust it with e.g. curl --cacert {Certificate}")]
    public static partial void SelfSignedCertificate(ILogger logger, string @default, string certificate, string key);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Information, Message = "starting miniqueue over HTTP/2 on port {Port} ({Transport}), data in {DataDirectory}")]
    public static partial void Starting(ILogger logger, int port, string transport, string dataDirectory);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Critical, Message = "miniqueue could not start: {Reason}")]
    public static partial void CouldNotStart(ILogger logger, string reason, Exception exception);
}
