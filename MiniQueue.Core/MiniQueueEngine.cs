using MiniQueue.Backend;
using MiniQueue.Engine;
using MiniQueue.Storage;

namespace MiniQueue;

/// <summary>
/// The queue: topics, publishing, competing consumers and purge. Open one with <see cref="OpenAsync(MiniQueueOptions?, CancellationToken)"/> and dispose it
/// when done; all members are thread-safe.
/// </summary>
/// <example>
/// <code>
/// await using var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions());
/// await queue.PublishAsync("orders", "hello"u8.ToArray());
/// await using var consumer = queue.Subscribe("orders");
/// Delivery delivery = await consumer.ReceiveAsync();
/// await consumer.AckAsync();
/// </code>
/// </example>
/// <remarks>
/// The engine is the public face of a backend that keeps the queue's state (see <see cref="IQueueBackend"/>): today the
/// local one, in memory or durable in the data directory.
/// </remarks>
public sealed class MiniQueueEngine : IAsyncDisposable
{
    private readonly IQueueBackend _backend;

    private MiniQueueEngine(IQueueBackend backend) => _backend = backend;

    /// <summary>The largest message body the engine takes, in bytes.</summary>
    public int MaxMessageBytes => _backend.MaxMessageBytes;

    /// <summary>
    /// Whether the engine takes publishes now: it is open and its store is not refusing records after a device
    /// failure (it comes back by itself once the device works again). Health checks report this.
    /// </summary>
    public bool IsWritable => _backend.IsWritable;

    /// <summary>
    /// Whether the durable store refuses publishes because its disk's free space is under the reserve
    /// (<see cref="MiniQueueOptions.DiskReserveBytes"/>). Consumers still work, and publishes are taken again by
    /// themselves once consumers have drained enough for compaction to give space back. Health checks report it as
    /// degraded.
    /// </summary>
    public bool IsDiskLow => _backend.IsDiskLow;

    /// <summary>
    /// Opens a queue. Without <see cref="MiniQueueOptions.DataDirectory"/> it lives in memory; with one it recovers
    /// what the folder holds.
    /// </summary>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public static async ValueTask<MiniQueueEngine> OpenAsync(MiniQueueOptions? options = null, CancellationToken cancellationToken = default) =>
        new(await LocalBackend.OpenAsync(options, cancellationToken).ConfigureAwait(false));

    /// <summary>The engine over another backend (the PostgreSQL one).</summary>
    internal static MiniQueueEngine Over(IQueueBackend backend) => new(backend);

    /// <summary>Opens an engine over <paramref name="store"/>, rebuilding its state from what the store replays (for tests).</summary>
    internal static async ValueTask<MiniQueueEngine> OpenAsync(MiniQueueOptions options, ILogStore store, CancellationToken cancellationToken) =>
        new(await LocalBackend.OpenAsync(options, store, cancellationToken).ConfigureAwait(false));

    /// <summary>
    /// Publishes a message. The topic is created by its first publish. The returned task completes once the message
    /// is durable (at once in memory); only then can a consumer receive it. The engine copies what it keeps: the caller
    /// may reuse <paramref name="payload"/>'s memory as soon as this method returns.
    /// </summary>
    /// <exception cref="ArgumentException">The topic name is invalid, or the message is larger than <see cref="MaxMessageBytes"/>.</exception>
    /// <exception cref="MiniQueueStoreException">The store could not take the message; it was not published.</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public ValueTask PublishAsync(string topic, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken) =>
        _backend.PublishAsync(topic, payload, cancellationToken);

    /// <summary>
    /// Publishes a message as <paramref name="options"/> say (with a delay, with an idempotency key); without options,
    /// as <see cref="PublishAsync(string, ReadOnlyMemory{byte}, CancellationToken)"/>. The result says whether the publish
    /// was a duplicate of an idempotency key (then nothing was enqueued).
    /// </summary>
    /// <exception cref="ArgumentException">
    /// The topic name is invalid, the message is larger than <see cref="MaxMessageBytes"/>, or the idempotency key is
    /// not 1 to 255 bytes of UTF-8.
    /// </exception>
    /// <exception cref="MiniQueueStoreException">The store could not take the message; it was not published.</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public ValueTask<PublishResult> PublishAsync(
        string topic, ReadOnlyMemory<byte> payload, PublishOptions? options = null, CancellationToken cancellationToken = default) =>
        _backend.PublishAsync(topic, payload, options, cancellationToken);

    /// <summary>
    /// Adds a consumer to a topic. Subscribing to a topic that does not exist yet is allowed: the consumer waits for
    /// its first message.
    /// </summary>
    /// <exception cref="ArgumentException">The topic name is invalid.</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public MiniQueueConsumer Subscribe(string topic) => new(_backend.Subscribe(topic));

    /// <summary>
    /// Discards the topic's ready and delayed messages. Messages that consumers hold stay with them and are settled as
    /// usual. Purging a topic that does not exist does nothing.
    /// </summary>
    /// <returns>How many messages were discarded.</returns>
    /// <exception cref="ArgumentException">The topic name is invalid.</exception>
    /// <exception cref="MiniQueueStoreException">The store could not record the purge.</exception>
    public ValueTask<int> PurgeAsync(string topic, CancellationToken cancellationToken = default) => _backend.PurgeAsync(topic, cancellationToken);

    /// <summary>
    /// Redrive: moves every message of <paramref name="topic"/>'s dead-letter topic (by default <c>&lt;topic&gt;.dead</c>)
    /// that no consumer holds back to the end of <paramref name="topic"/>, in the dead-letter topic's delivery order,
    /// each as a new message there (dackCount 0, no deliveries). Delayed ones move too, at once.
    /// </summary>
    /// <returns>How many messages moved (0 when the dead-letter topic does not exist).</returns>
    /// <exception cref="ArgumentException">The topic name is invalid.</exception>
    /// <exception cref="MiniQueueStoreException">The store could not take (or make durable) a move; the messages before it moved.</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public ValueTask<int> RedriveAsync(string topic, CancellationToken cancellationToken = default) => _backend.RedriveAsync(topic, cancellationToken);

    /// <summary>The topic's counts now; all zero for a topic that does not exist.</summary>
    /// <exception cref="ArgumentException">The topic name is invalid.</exception>
    public TopicStats GetStats(string topic) => _backend.GetStats(topic);

    /// <summary>The names of the topics that exist (that have had a message published), in ordinal order.</summary>
    public IReadOnlyList<string> GetTopics() => _backend.GetTopics();

    /// <summary>
    /// Ends every consumer (held messages return to the front), refuses further work and closes the store after a
    /// final commit.
    /// </summary>
    public ValueTask DisposeAsync() => _backend.DisposeAsync();

    /// <summary>The local backend behind the engine (for tests and benchmarks).</summary>
    internal LocalBackend Local => (LocalBackend)_backend;

    /// <summary>The backend behind the engine (for tests).</summary>
    internal IQueueBackend Backend => _backend;

    /// <summary>The store behind the engine (for tests and benchmarks).</summary>
    internal ILogStore Store => Local.Store;

    /// <summary>How many log records the engine replayed when it opened (for tests).</summary>
    internal long RecoveredRecords => Local.RecoveredRecords;

    /// <summary>The bytes of message bodies kept in memory by a durable engine (for tests).</summary>
    internal long CachedBodyBytes => Local.CachedBodyBytes;

    internal long BodiesReadAhead => Local.BodiesReadAhead;

    /// <summary>Every topic the engine knows, with its counts (for tests).</summary>
    internal IEnumerable<(string Topic, TopicStats Stats)> GetTopicsWithStats() => Local.GetTopicsWithStats();

    /// <summary>Compacts the log now (for tests); returns its new start.</summary>
    internal ValueTask<long> CompactAsync(CancellationToken cancellationToken = default) => Local.CompactAsync(cancellationToken);
}
