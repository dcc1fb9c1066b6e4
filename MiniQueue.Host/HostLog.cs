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

    [LoggerMessage(EventId = 3004, Level = LogLevel.Information, Message = "access file {Path} reloaded: {Identities} identities")]
    public static partial void AccessFileReloaded(ILogger logger, string path, int identities);

    [LoggerMessage(EventId = 3005, Level = LogLevel.Error, Message = "access file {Path} changed but was refused, the previous one stays in force: {Reason}")]
    public static partial void AccessFileRefused(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 3006, Level = LogLevel.Information, Message = "request to {Path} from {Remote} refused with 401: {Reason}")]
    public static partial void Unauthenticated(ILogger logger, PathString path, System.Net.IPAddress? remote, string reason);

    [LoggerMessage(EventId = 3007, Level = LogLevel.Information, Message = "TLS certificate reloaded from {Certificate}")]
    public static partial void CertificateReloaded(ILogger logger, string certificate);

    [LoggerMessage(EventId = 3008, Level = LogLevel.Error, Message = "TLS certificate {Certificate} changed but could not be loaded, the previous one stays in use: {Reason}")]
    public static partial void CertificateRefused(ILogger logger, string certificate, string reason);

    [LoggerMessage(EventId = 3009, Level = LogLevel.Information, Message = "request to {Path} from {Identity} at {Remote} refused with 429: over -rate")]
    public static partial void RateLimited(ILogger logger, PathString path, string? identity, System.Net.IPAddress? remote);
}
