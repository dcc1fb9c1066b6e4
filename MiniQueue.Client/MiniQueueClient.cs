using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text.Json;

namespace MiniQueue.Client;

/// <summary>
/// A client of a MiniQueue server (or the Go miniqueue) over HTTP/2: publish, purge, and subscriptions (consumer
/// streams). Thread-safe; create one per server and reuse it. Each subscription is for one caller at a time.
/// </summary>
/// <example>
/// <code>
/// using var client = new MiniQueueClient(new Uri("https://localhost:8080"));
/// await client.PublishAsync("orders", "hello"u8.ToArray());
/// await using var subscription = await client.SubscribeAsync("orders");
/// MiniQueueMessage message = await subscription.ReceiveAsync();
/// await subscription.AckAsync();
/// </code>
/// </example>
public sealed class MiniQueueClient : IDisposable
{
    private const int MaxCachedUris = 1024;

    private readonly HttpMessageInvoker[] _invokers;
    private readonly Uri _baseAddress;
    private readonly Version _version;
    private readonly HttpVersionPolicy _versionPolicy;
    private readonly TimeSpan _timeout;
    private readonly ConcurrentDictionary<string, Uri> _publishUris = new(StringComparer.Ordinal);
    private uint _next;
    private int _disposed;

    /// <summary>Creates a client of the server at <paramref name="baseAddress"/> with default settings.</summary>
    public MiniQueueClient(Uri baseAddress)
        : this(new MiniQueueClientOptions { BaseAddress = baseAddress })
    {
    }

    /// <summary>Creates a client with the given settings.</summary>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public MiniQueueClient(MiniQueueClientOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var baseAddress = options.BaseAddress!;
        _baseAddress = baseAddress.AbsoluteUri.EndsWith('/') ? baseAddress : new Uri(baseAddress.AbsoluteUri + "/");
        _version = options.HttpVersion;
        _versionPolicy = options.VersionPolicy;
        _timeout = options.RequestTimeout;
        _invokers = new HttpMessageInvoker[options.Connections];
        for (var i = 0; i < _invokers.Length; i++)
        {
            _invokers[i] = new HttpMessageInvoker(options.CreateHandler?.Invoke() ?? CreateHandler(options), disposeHandler: true);
        }
    }

    /// <summary>
    /// Publishes a message to a topic (created by its first publish); completes once the server stored it.
    /// </summary>
    /// <exception cref="MiniQueueClientException">The server refused it: <c>invalid topic value</c> (400), <c>message too large</c> (413), <c>error publishing to broker</c> (503).</exception>
    /// <exception cref="HttpRequestException">The server could not be reached.</exception>
    public async Task PublishAsync(string topic, ReadOnlyMemory<byte> message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(topic);
        using var request = NewRequest(HttpMethod.Post, PublishUri(topic));
        request.Content = new ReadOnlyMemoryContent(message);
        await SendAsync(request, HttpStatusCode.Created, "publish", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Publishes a message as <paramref name="options"/> say: with a delay (<c>?delay=N</c>, rounded up to whole seconds)
    /// or an idempotency key (the <c>Idempotency-Key</c> header); completes once the server stored it, or found it to
    /// repeat a key it published within its window (then nothing was enqueued: <see cref="MiniQueuePublishResult.IsDuplicate"/>).
    /// </summary>
    /// <exception cref="MiniQueueClientException">The server refused it, e.g. <c>invalid idempotency key</c> (400).</exception>
    /// <exception cref="HttpRequestException">The server could not be reached.</exception>
    public async Task<MiniQueuePublishResult> PublishAsync(
        string topic, ReadOnlyMemory<byte> message, MiniQueuePublishOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(topic);
        var uri = PublishUri(topic);
        var seconds = MiniQueueSubscription.ToWholeSeconds(options?.Delay ?? TimeSpan.Zero);
        if (seconds > 0)
        {
            uri = new Uri(uri + "?delay=" + seconds.ToString(CultureInfo.InvariantCulture), UriKind.RelativeOrAbsolute);
        }

        using var request = NewRequest(HttpMethod.Post, uri);
        request.Content = new ReadOnlyMemoryContent(message);
        if (options?.IdempotencyKey is { } key)
        {
            request.Headers.TryAddWithoutValidation("Idempotency-Key", key);
        }

        return await SendAsync(
            request, HttpStatusCode.Created, "publish",
            static (response, _) => Task.FromResult(new MiniQueuePublishResult(
                response.Headers.TryGetValues("Idempotent-Replayed", out var values) && values.Contains("true", StringComparer.OrdinalIgnoreCase))),
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Moves every message of the topic's dead-letter topic (by default <c>&lt;topic&gt;.dead</c>) that no consumer holds
    /// back to the end of the topic (<c>POST /redrive/{topic}</c>); returns how many moved.
    /// </summary>
    /// <exception cref="MiniQueueClientException">The server refused it.</exception>
    public async Task<int> RedriveAsync(string topic, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(topic);
        using var request = NewRequest(HttpMethod.Post, TopicUri("redrive/", topic));
        return await SendAsync(request, HttpStatusCode.OK, "redrive", static async (response, cancellationToken) =>
        {
            var body = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
            var reader = new Utf8JsonReader(body);
            while (reader.Read())
            {
                if (reader.TokenType == JsonTokenType.PropertyName && reader.ValueTextEquals("moved"u8) && reader.Read() && reader.TryGetInt32(out var moved))
                {
                    return moved;
                }
            }

            throw new MiniQueueClientException("The server's answer to a redrive did not say how many messages moved.", response.StatusCode, null);
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Purges a topic: discards its ready and delayed messages (held ones stay with their consumers).</summary>
    /// <exception cref="MiniQueueClientException">The server refused it.</exception>
    public async Task PurgeAsync(string topic, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(topic);
        using var request = NewRequest(HttpMethod.Delete, TopicUri("", topic));
        await SendAsync(request, HttpStatusCode.OK, "purge", cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Opens a consumer stream on a topic (a topic that does not exist yet is waited for). The returned subscription
    /// receives nothing until <see cref="MiniQueueSubscription.ReceiveAsync"/> is called.
    /// </summary>
    /// <exception cref="MiniQueueClientException">The server refused it.</exception>
    public async Task<MiniQueueSubscription> SubscribeAsync(string topic, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(topic);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var request = NewRequest(HttpMethod.Post, TopicUri("subscribe/", topic));
        var content = new CommandStreamContent();
        request.Content = content;
        using var timeout = NewTimeout(cancellationToken);
        HttpResponseMessage response;
        try
        {
            response = await NextInvoker().SendAsync(request, timeout?.Token ?? cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            content.Complete();
            request.Dispose();
            throw;
        }

        try
        {
            if (response.StatusCode != HttpStatusCode.OK)
            {
                throw await RefusedAsync(response, "subscribe", cancellationToken).ConfigureAwait(false);
            }

            var commands = await content.GetStreamAsync().WaitAsync(timeout?.Token ?? cancellationToken).ConfigureAwait(false);
            var lines = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            return new MiniQueueSubscription(topic, request, response, content, commands, lines);
        }
        catch
        {
            content.Complete();
            response.Dispose();
            request.Dispose();
            throw;
        }
    }

    /// <summary>Closes the client's connections. Open subscriptions end.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        foreach (var invoker in _invokers)
        {
            invoker.Dispose();
        }
    }

    private static SocketsHttpHandler CreateHandler(MiniQueueClientOptions options)
    {
        var handler = new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = true,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            AllowAutoRedirect = false,
        };

        if (options.ServerCertificateValidation is { } validation)
        {
            handler.SslOptions.RemoteCertificateValidationCallback = validation;
        }

        return handler;
    }

    private static string Escape(string topic)
    {
        // URL paths have no way to carry these two names: servers remove them as dot segments, escaped or not.
        if (topic is "." or "..")
        {
            throw new ArgumentException($"The topic name '{topic}' cannot be sent over HTTP: URL paths treat it as a dot segment.", nameof(topic));
        }

        return Uri.EscapeDataString(topic);
    }

    private Uri PublishUri(string topic)
    {
        if (_publishUris.TryGetValue(topic, out var uri))
        {
            return uri;
        }

        uri = TopicUri("publish/", topic);
        if (_publishUris.Count < MaxCachedUris)
        {
            _publishUris.TryAdd(topic, uri);
        }

        return uri;
    }

    /// <summary>The address of a route for a topic, exactly as escaped here, without <see cref="Uri"/>'s canonicalisation.</summary>
    private Uri TopicUri(string route, string topic) =>
        new(_baseAddress.AbsoluteUri + route + Escape(topic), new UriCreationOptions { DangerousDisablePathAndQueryCanonicalization = true });

    private HttpRequestMessage NewRequest(HttpMethod method, Uri uri) =>
        new(method, uri) { Version = _version, VersionPolicy = _versionPolicy };

    private HttpMessageInvoker NextInvoker() =>
        _invokers.Length == 1 ? _invokers[0] : _invokers[Interlocked.Increment(ref _next) % (uint)_invokers.Length];

    private CancellationTokenSource? NewTimeout(CancellationToken cancellationToken)
    {
        if (_timeout == Timeout.InfiniteTimeSpan)
        {
            return null;
        }

        var source = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        source.CancelAfter(_timeout);
        return source;
    }

    private async Task SendAsync(HttpRequestMessage request, HttpStatusCode expected, string what, CancellationToken cancellationToken) =>
        await SendAsync(request, expected, what, static (_, _) => Task.FromResult(true), cancellationToken).ConfigureAwait(false);

    /// <summary>Sends a request and reads what it answered with <paramref name="read"/>, or throws the server's refusal.</summary>
    private async Task<T> SendAsync<T>(
        HttpRequestMessage request, HttpStatusCode expected, string what, Func<HttpResponseMessage, CancellationToken, Task<T>> read, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        using var timeout = NewTimeout(cancellationToken);
        using var response = await NextInvoker().SendAsync(request, timeout?.Token ?? cancellationToken).ConfigureAwait(false);
        if (response.StatusCode != expected)
        {
            throw await RefusedAsync(response, what, cancellationToken).ConfigureAwait(false);
        }

        return await read(response, timeout?.Token ?? cancellationToken).ConfigureAwait(false);
    }

    private static async Task<MiniQueueClientException> RefusedAsync(HttpResponseMessage response, string what, CancellationToken cancellationToken)
    {
        string? error = null;
        try
        {
            var body = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
            error = ErrorOf(body);
        }
        catch (Exception exception) when (exception is HttpRequestException or IOException)
        {
            // The status says enough.
        }

        var status = (int)response.StatusCode;
        return new MiniQueueClientException(
            error is null ? $"The server refused the {what} with status {status}." : $"The server refused the {what} with status {status}: {error}",
            response.StatusCode,
            error);
    }

    /// <summary>The text of a <c>{"error":"..."}</c> body, or <see langword="null"/>.</summary>
    internal static string? ErrorOf(ReadOnlySpan<byte> body)
    {
        try
        {
            var json = new Utf8JsonReader(body);
            if (!json.Read() || json.TokenType != JsonTokenType.StartObject)
            {
                return null;
            }

            while (json.Read() && json.TokenType == JsonTokenType.PropertyName)
            {
                var isError = json.ValueTextEquals("error"u8);
                json.Read();
                if (isError && json.TokenType == JsonTokenType.String)
                {
                    return json.GetString();
                }

                json.Skip();
            }
        }
        catch (JsonException)
        {
        }

        return null;
    }
}
