namespace MiniQueue.Http;

/// <summary>
/// Settings of MiniQueue's HTTP front, next to the engine's <see cref="MiniQueueOptions"/>. Bound from the
/// configuration section <c>MiniQueue:Http</c> by <c>AddMiniQueue</c>; every property has a default.
/// </summary>
public sealed class MiniQueueHttpOptions
{
    /// <summary>The default of <see cref="MaxStreamsPerConnection"/>: 1000.</summary>
    public const int DefaultMaxStreamsPerConnection = 1000;

    /// <summary>
    /// Whether <c>MapMiniQueue()</c> and <c>UseMiniQueue()</c> mounted at the root (no prefix) also serve purge,
    /// <c>DELETE /{topic}</c>, as the standalone miniqueue does. Default: <see langword="false"/>, because at the root
    /// that route claims every one-segment path of the application (a DELETE of <c>/anything</c> would purge a topic,
    /// and other methods there answer 405). Under a prefix purge is always served, at <c>DELETE {prefix}/{topic}</c>.
    /// </summary>
    public bool PurgeAtRoot { get; set; }

    /// <summary>
    /// The number of concurrent HTTP/2 streams a client may open on one connection, which bounds the consumers
    /// (subscribe streams) one connection can carry. <c>AddMiniQueue</c> raises Kestrel's
    /// <c>Limits.Http2.MaxStreamsPerConnection</c> to this value when the application left it at Kestrel's default
    /// (100); a value the application set itself is kept. Default: <see cref="DefaultMaxStreamsPerConnection"/> (1000).
    /// <see langword="null"/> leaves Kestrel's setting alone.
    /// </summary>
    public int? MaxStreamsPerConnection { get; set; } = DefaultMaxStreamsPerConnection;

    /// <summary>
    /// Whether every protocol request is authorized per topic with ASP.NET Core's authorization: the user of the request,
    /// the resource <see cref="MiniQueueTopic"/> and the requirement of its operation (<see cref="MiniQueueOperations"/>).
    /// A refusal is answered 401 (with the authentication scheme's challenge) when the user is not authenticated, else
    /// 403, and nothing is done. Needs <c>services.AddAuthorization()</c> and a handler for those requirements (without
    /// one every request is refused). Default: <see langword="false"/> (authorize the whole mount with
    /// <c>MapMiniQueue().RequireAuthorization(...)</c> instead, or as well).
    /// </summary>
    public bool AuthorizeTopics { get; set; }

    /// <summary>
    /// The most consumer streams one topic may have at once through this server; a subscribe beyond it is answered 429
    /// with <c>{"error":"too many consumers"}</c>. Default: <see langword="null"/>, no limit.
    /// </summary>
    public int? MaxConsumersPerTopic { get; set; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first property whose value cannot work.</summary>
    public void Validate()
    {
        if (MaxConsumersPerTopic is <= 0)
        {
            throw new ArgumentException(
                $"{nameof(MaxConsumersPerTopic)} must be positive or null, not {MaxConsumersPerTopic}.", nameof(MaxConsumersPerTopic));
        }

        if (MaxStreamsPerConnection is <= 0)
        {
            throw new ArgumentException(
                $"{nameof(MaxStreamsPerConnection)} must be positive or null, not {MaxStreamsPerConnection}.", nameof(MaxStreamsPerConnection));
        }
    }
}
