using System.Net;
using System.Net.Security;

namespace MiniQueue.Client;

/// <summary>Settings of a <see cref="MiniQueueClient"/>.</summary>
public sealed class MiniQueueClientOptions
{
    /// <summary>
    /// The server's address, with the path prefix the routes are mapped under if any: <c>https://localhost:8080</c>,
    /// <c>https://example.com/mq/</c>. Required.
    /// </summary>
    public Uri? BaseAddress { get; set; }

    /// <summary>
    /// How many HTTP/2 connections the client spreads its requests over, round-robin (one connection serialises its
    /// streams' frames, which limits throughput at high rates). Each connection still carries many concurrent
    /// requests, and opens more when the server's stream limit is reached. Default: 1.
    /// </summary>
    public int Connections { get; set; } = 1;

    /// <summary>
    /// Checks the server's certificate, e.g. to trust a self-signed one; <see langword="null"/> uses the system's
    /// trust. Ignored when <see cref="CreateHandler"/> is set. Default: <see langword="null"/>.
    /// </summary>
    public RemoteCertificateValidationCallback? ServerCertificateValidation { get; set; }

    /// <summary>
    /// Creates the handler of each connection, for custom transports and tests; <see langword="null"/> creates a
    /// <see cref="SocketsHttpHandler"/> with <see cref="SocketsHttpHandler.EnableMultipleHttp2Connections"/>.
    /// The client disposes the handlers it creates. Default: <see langword="null"/>.
    /// </summary>
    public Func<HttpMessageHandler>? CreateHandler { get; set; }

    /// <summary>
    /// The HTTP version requests ask for. Default: 2.0 (with <see cref="VersionPolicy"/>, HTTP/2 exactly: over
    /// <c>https</c> with ALPN, over <c>http</c> with prior knowledge).
    /// </summary>
    public Version HttpVersion { get; set; } = System.Net.HttpVersion.Version20;

    /// <summary>Whether a request may use another HTTP version. Default: <see cref="HttpVersionPolicy.RequestVersionExact"/>.</summary>
    public HttpVersionPolicy VersionPolicy { get; set; } = HttpVersionPolicy.RequestVersionExact;

    /// <summary>
    /// The longest a publish or purge may take, and the longest a subscribe may take to be answered (an open
    /// subscription has no time limit). Default: 100 seconds. <see cref="Timeout.InfiniteTimeSpan"/> for none.
    /// </summary>
    public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(100);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first property whose value cannot work.</summary>
    public void Validate()
    {
        if (BaseAddress is not { IsAbsoluteUri: true })
        {
            throw new ArgumentException($"{nameof(BaseAddress)} must be an absolute URI, such as https://localhost:8080.", nameof(BaseAddress));
        }

        if (Connections < 1)
        {
            throw new ArgumentException($"{nameof(Connections)} must be at least 1, not {Connections}.", nameof(Connections));
        }

        if (RequestTimeout <= TimeSpan.Zero && RequestTimeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentException($"{nameof(RequestTimeout)} must be positive or infinite, not {RequestTimeout}.", nameof(RequestTimeout));
        }

        ArgumentNullException.ThrowIfNull(HttpVersion);
    }
}
