using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MiniQueue.Backend;
using MiniQueue.Storage;

namespace MiniQueue.Engine;

/// <summary>
/// The backend that keeps the queue's state in this process: its topics (<see cref="TopicQueue"/>) in memory, written
/// to a store (<see cref="ILogStore"/>: nothing in memory mode, a FasterLog when durable) and rebuilt from it on
/// open. The public members follow the contract <see cref="MiniQueueEngine"/> documents.
/// </summary>
internal sealed partial class LocalBackend : IQueueBackend
{
    private readonly ConcurrentDictionary<string, TopicQueue> _topics = new(StringComparer.Ordinal);

    /// <summary>The log of a durable engine; null in memory.</summary>
    private readonly LogStorage? _log;
    private readonly TimeProvider _time;
    private readonly TimeSpan _delayCheckPeriod;
    private readonly Func<string, TopicPolicy> _policyOf;
    private long _lastTopicRank;
    private readonly int _maxMessageBytes;
    private readonly int? _maxTopics;
    private int _createdTopics;
    private readonly Func<TopicQueue, TopicJournal> _journalOf;
    private readonly ILogger _logger;
    private readonly MiniQueueMetrics _metrics;
    private long _lastMessageId;
    private int _disposed;

    private LocalBackend(MiniQueueOptions options, ILogStore? store, Meter meter, bool ownsMeter)
    {
        _metrics = new MiniQueueMetrics(meter, ownsMeter, GetTopicsWithStats, LogBytes, DiskSpace, options);
        _time = options.TimeProvider;
        _delayCheckPeriod = options.DelayCheckPeriod;
        _policyOf = TopicPolicy.Resolver(options);
        _maxMessageBytes = options.MaxMessageBytes;
        _maxTopics = options.MaxTopics;
        _logger = (options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger("MiniQueue.Engine");

        // In memory, a topic records nothing; durable, it writes the log.
        _log = store is null ? null : new LogStorage(this, store, options.BodyCacheBytes, _logger, _metrics);
        _journalOf = _log is { } log ? log.JournalOf : static _ => MemoryJournal.Instance;
    }

    /// <summary>The largest message body the engine takes, in bytes.</summary>
    public int MaxMessageBytes => _maxMessageBytes;

    /// <summary>
    /// Whether the engine takes publishes now: it is open and its store is not refusing records after a device
    /// failure (it comes back by itself once the device works again). Health checks report this.
    /// </summary>
    public bool IsWritable => Volatile.Read(ref _disposed) == 0 && _log?.Store.IsFaulted != true;

    /// <summary>
    /// Whether the durable store refuses publishes because its disk's free space is under the reserve
    /// (<see cref="MiniQueueOptions.DiskReserveBytes"/>). Consumers still work, and publishes are taken again by
    /// themselves once consumers have drained enough for compaction to give space back. Health checks report it as
    /// degraded.
    /// </summary>
    public bool IsDiskLow => _log?.Store.IsLowOnSpace == true;

    /// <summary>
    /// Opens a queue. Without <see cref="MiniQueueOptions.DataDirectory"/> it lives in memory; with one it recovers
    /// what the folder holds.
    /// </summary>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public static ValueTask<LocalBackend> OpenAsync(MiniQueueOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new MiniQueueOptions();
        options.Validate();
        if (options.DataDirectory is null)
        {
            var (meter, ownsMeter) = MiniQueueMetrics.CreateMeter(options);
            return OpenAsync(options, null, meter, ownsMeter, cancellationToken);
        }

        return OpenDurableAsync(options, cancellationToken);
    }

    private static async ValueTask<LocalBackend> OpenDurableAsync(MiniQueueOptions options, CancellationToken cancellationToken)
    {
        var (meter, ownsMeter) = MiniQueueMetrics.CreateMeter(options);
        var logger = (options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger("MiniQueue.Store");
        FasterLogStore store;
        try
        {
            store = FasterLogStore.Open(options, logger, meter);
        }
        catch
        {
            if (ownsMeter)
            {
                meter.Dispose();
            }

            throw;
        }

        return await OpenAsync(options, store, meter, ownsMeter, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Opens an engine over <paramref name="store"/>, rebuilding its state from what the store replays.</summary>
    internal static ValueTask<LocalBackend> OpenAsync(MiniQueueOptions options, ILogStore store, CancellationToken cancellationToken)
    {
        var (meter, ownsMeter) = MiniQueueMetrics.CreateMeter(options);
        return OpenAsync(options, store, meter, ownsMeter, cancellationToken);
    }

    private static async ValueTask<LocalBackend> OpenAsync(
        MiniQueueOptions options, ILogStore? store, Meter meter, bool ownsMeter, CancellationToken cancellationToken)
    {
        LocalBackend? engine = null;
        try
        {
            options.Validate();
            engine = new LocalBackend(options, store, meter, ownsMeter);
            if (engine._log is { } log)
            {
                await engine.RecoverAsync(log.Store, cancellationToken).ConfigureAwait(false);
                log.Start();
            }

            return engine;
        }
        catch
        {
            // The store belongs to the engine from here on; close it (and the meter) when opening fails.
            engine?._metrics.Dispose();
            if (engine is null && ownsMeter)
            {
                meter.Dispose();
            }

            if (store is not null)
            {
                await store.DisposeAsync().ConfigureAwait(false);
            }

            throw;
        }
    }

    private async ValueTask RecoverAsync(ILogStore store, CancellationToken cancellationToken)
    {
        var recovery = new Recovery();
        await foreach (var record in store.ReplayAsync(cancellationToken).ConfigureAwait(false))
        {
            recovery.Apply(record);
        }

        _lastMessageId = recovery.MaxMessageId;
        RecoveredRecords = recovery.Records;
        if (recovery.Records == 0)
        {
            return;
        }

        var held = 0;
        var topics = 0;
        foreach (var recovered in recovery.Topics())
        {
            var topic = NewTopic(recovered.Name);
            topic.Restore(
                recovered.Front, recovered.Delayed, recovered.Ready, recovered.FirstParts, recovered.Deliveries, recovered.Keys, recovered.LastId, recovered.DackSequence);
            _topics[recovered.Name] = topic;
            topics++;

            // Held messages are now at the front; say so in the log, latest delivered first, so that a later replay
            // puts them exactly where they are now.
            for (var i = recovered.HeldAtCrash.Count - 1; i >= 0; i--)
            {
                store.Append(LogRecord.Nack(recovered.HeldAtCrash[i].Id));
            }

            held += recovered.HeldAtCrash.Count;
        }

        EngineLog.Recovered(_logger, topics, recovery.LiveMessages, held, recovery.Records);
    }

    /// <summary>
    /// Publishes a message. The topic is created by its first publish. The returned task completes once the message
    /// is durable (at once in memory); only then can a consumer receive it. The engine copies what it keeps: the caller
    /// may reuse <paramref name="payload"/>'s memory as soon as this method returns.
    /// </summary>
    /// <exception cref="ArgumentException">The topic name is invalid, or the message is larger than <see cref="MaxMessageBytes"/>.</exception>
    /// <exception cref="MiniQueueStoreException">The store could not take the message; it was not published.</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public ValueTask PublishAsync(string topic, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken) =>
        Publish(topic, payload, null, null, cancellationToken);

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
        string topic, ReadOnlyMemory<byte> payload, PublishOptions? options = null, CancellationToken cancellationToken = default)
    {
        KeyedPublish? keyed = null;
        if (options?.IdempotencyKey is { } key)
        {
            keyed = new KeyedPublish(key, IdempotencyKeys.ToUtf8(key)
                ?? throw new ArgumentException($"An idempotency key must be 1 to {PublishOptions.MaxIdempotencyKeyBytes} bytes of UTF-8.", nameof(options)));
        }

        var publish = Publish(topic, payload, options, keyed, cancellationToken);
        return publish.IsCompletedSuccessfully ? new(new PublishResult(keyed?.IsDuplicate ?? false)) : ResultWhenDoneAsync(publish, keyed);
    }

    private static async ValueTask<PublishResult> ResultWhenDoneAsync(ValueTask publish, KeyedPublish? keyed)
    {
        await publish.ConfigureAwait(false);
        return new PublishResult(keyed?.IsDuplicate ?? false);
    }

    private ValueTask Publish(string topic, ReadOnlyMemory<byte> payload, PublishOptions? options, KeyedPublish? keyed, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        ThrowIfDisposed();
        if (payload.Length > _maxMessageBytes)
        {
            throw new ArgumentException($"message too large: {payload.Length} bytes, the maximum is {_maxMessageBytes}.", nameof(payload));
        }

        var admission = _log?.Admit(payload.Length) ?? PublishAdmission.Now;
        var started = Stopwatch.GetTimestamp();
        return admission switch
        {
            PublishAdmission.InParts => PublishLargeAsync(_log!.Store, topic, payload, options, keyed, started, cancellationToken),
            PublishAdmission.WhenRoom => PublishWhenRoomAsync(_log!.Store, topic, payload, options, keyed, started, cancellationToken),
            _ => PublishNow(topic, payload, options, keyed, started),
        };
    }

    /// <summary>
    /// A body written as several records (it is larger than one log page): no commit may be issued while its parts fill
    /// the log's write buffer (FasterLog cannot take that; see FasterLogStore), so commits wait while they are appended.
    /// </summary>
    private async ValueTask PublishLargeAsync(
        ILogStore store, string topic, ReadOnlyMemory<byte> payload, PublishOptions? options, KeyedPublish? keyed, long started, CancellationToken cancellationToken)
    {
        // The caller may reuse its buffer once PublishAsync returns, and this waits before it appends.
        payload = payload.ToArray();
        await store.WaitForRoomAsync(cancellationToken).ConfigureAwait(false);
        ValueTask publish;
        using (await store.HoldCommitsAsync(cancellationToken).ConfigureAwait(false))
        {
            publish = PublishNow(topic, payload, options, keyed, started);
        }

        await publish.ConfigureAwait(false);
    }

    private async ValueTask PublishWhenRoomAsync(
        ILogStore store, string topic, ReadOnlyMemory<byte> payload, PublishOptions? options, KeyedPublish? keyed, long started, CancellationToken cancellationToken)
    {
        // The caller may reuse its buffer once PublishAsync returns, and this waits before it appends.
        payload = payload.ToArray();
        await store.WaitForRoomAsync(cancellationToken).ConfigureAwait(false);
        await PublishNow(topic, payload, options, keyed, started).ConfigureAwait(false);
    }

    /// <summary>Publishes now; the returned task completes (and the publish is counted) once the message is durable.</summary>
    private ValueTask PublishNow(string topic, ReadOnlyMemory<byte> payload, PublishOptions? options, KeyedPublish? keyed, long started)
    {
        while (true)
        {
            var queue = GetOrAddTopic(topic);
            PublishStep step;
            ValueTask completion;
            Task<bool>? original;
            try
            {
                step = queue.TryPublish(payload, options, keyed, started, out completion, out original);
            }
            catch (MiniQueueStoreException exception)
            {
                EngineLog.PublishFailed(_logger, topic, exception);
                _log?.RequestMaintenance();
                throw;
            }

            switch (step)
            {
                case PublishStep.Published:
                    return completion;
                case PublishStep.Duplicate:
                    keyed!.IsDuplicate = true;
                    _metrics.Duplicate(topic);
                    EngineLog.Duplicate(_logger, topic);
                    return default;
                case PublishStep.AwaitOriginal:
                    return AwaitOriginalAsync(original!, topic, payload.ToArray(), options, keyed!, started);
                default:
                    Forget(queue);
                    break;
            }
        }
    }

    /// <summary>
    /// A repeat of an idempotency key whose first publish is not durable yet: a duplicate once it is; if it fails, this
    /// publish is made after all (<paramref name="payload"/> is a copy: the caller's buffer may be reused meanwhile).
    /// </summary>
    private async ValueTask AwaitOriginalAsync(Task<bool> original, string topic, byte[] payload, PublishOptions? options, KeyedPublish keyed, long started)
    {
        if (await original.ConfigureAwait(false))
        {
            keyed.IsDuplicate = true;
            _metrics.Duplicate(topic);
            EngineLog.Duplicate(_logger, topic);
            return;
        }

        ThrowIfDisposed();
        await PublishNow(topic, payload, options, keyed, started).ConfigureAwait(false);
    }

    /// <summary>
    /// Adds a consumer to a topic. Subscribing to a topic that does not exist yet is allowed: the consumer waits for
    /// its first message.
    /// </summary>
    /// <exception cref="ArgumentException">The topic name is invalid.</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    IQueueConsumer IQueueBackend.Subscribe(string topic) => Subscribe(topic);

    public LocalConsumer Subscribe(string topic)
    {
        ThrowIfDisposed();
        while (true)
        {
            var queue = GetOrAddTopic(topic);
            var consumer = new LocalConsumer(this, queue);
            if (queue.TryAddConsumer(consumer))
            {
                return consumer;
            }

            Forget(queue);
        }
    }

    /// <summary>
    /// Discards the topic's ready and delayed messages. Messages that consumers hold stay with them and are settled as
    /// usual. Purging a topic that does not exist does nothing.
    /// </summary>
    /// <returns>How many messages were discarded.</returns>
    /// <exception cref="ArgumentException">The topic name is invalid.</exception>
    /// <exception cref="MiniQueueStoreException">The store could not record the purge.</exception>
    public ValueTask<int> PurgeAsync(string topic, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<int>(cancellationToken);
        }

        ThrowIfDisposed();
        return FindTopic(topic) is { } queue ? queue.PurgeAsync() : ValueTask.FromResult(0);
    }

    /// <summary>The topic's counts now; all zero for a topic that does not exist.</summary>
    /// <exception cref="ArgumentException">The topic name is invalid.</exception>
    public TopicStats GetStats(string topic) => FindTopic(topic)?.GetStats() ?? default;

    /// <summary>The names of the topics that exist (that have had a message published), in ordinal order.</summary>
    public IReadOnlyList<string> GetTopics() =>
        [.. _topics.Values.Where(static topic => topic.IsCreated).Select(static topic => topic.Name).Order(StringComparer.Ordinal)];

    /// <summary>
    /// Ends every consumer (held messages return to the front), refuses further work and closes the store after a
    /// final commit.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        if (_log is not null)
        {
            await _log.StopAsync().ConfigureAwait(false);
        }

        foreach (var topic in _topics.Values)
        {
            await topic.CloseAsync().ConfigureAwait(false);
        }

        if (_log is not null)
        {
            await _log.DisposeAsync().ConfigureAwait(false);
        }

        _metrics.Dispose();
    }

    internal ILogger Logger => _logger;

    internal long NextMessageId() => Interlocked.Increment(ref _lastMessageId);

    /// <summary>The id of the last message published (or of the last checkpoint written).</summary>
    internal long LastMessageId => Volatile.Read(ref _lastMessageId);

    /// <summary>Every topic the engine knows.</summary>
    internal ICollection<TopicQueue> Topics => _topics.Values;

    internal MiniQueueMetrics Metrics => _metrics;

    /// <summary>Every topic the engine knows (created or waited for), with its counts, for the metrics' gauges.</summary>
    internal IEnumerable<(string Topic, TopicStats Stats)> GetTopicsWithStats() =>
        _topics.Values.Select(static topic => (topic.Name, topic.GetStats()));

    /// <summary>The durable store's disk: the room left, the reserve, and whether publishes are refused; null in memory.</summary>
    internal (long Available, long Reserve, bool Low)? DiskSpace() => Volatile.Read(ref _disposed) == 0 ? _log?.DiskSpace() : null;

    /// <summary>The bytes the durable log takes on disk; 0 in memory.</summary>
    internal long LogBytes() => _log?.LogBytes() ?? 0;

    /// <summary>How many log records the engine replayed when it opened.</summary>
    internal long RecoveredRecords { get; private set; }

    /// <summary>The log behind a durable engine (for tests and benchmarks).</summary>
    internal LogStorage Log => _log ?? throw new InvalidOperationException("An in-memory engine has no log.");

    /// <summary>
    /// Whether the log can take records now without blocking (always in memory). Records are written under topic locks,
    /// so an operation that writes one waits for room (<see cref="WaitForRoomAsync"/>) first when there is none.
    /// </summary>
    internal bool HasRoom => _log is not { Store.HasRoom: false };

    /// <summary>Completes when <see cref="HasRoom"/> holds again.</summary>
    internal ValueTask WaitForRoomAsync(CancellationToken cancellationToken = default) =>
        _log is { } log ? log.Store.WaitForRoomAsync(cancellationToken) : default;

    /// <summary>The store behind a durable engine (for tests and benchmarks).</summary>
    internal ILogStore Store => Log.Store;

    /// <summary>Where the live bodies are in the log (for tests).</summary>
    internal LogSpace Space => Log.Space;

    /// <summary>The bytes of message bodies kept in memory by a durable engine.</summary>
    internal long CachedBodyBytes => _log?.Bodies.Bytes ?? 0;

    /// <summary>How many bodies were delivered from a read ahead of the log (for tests).</summary>
    internal long BodiesReadAhead => _log?.ReadAhead.Delivered ?? 0;

    /// <summary>Frees the oldest log segments when the live bodies in them are few (see <see cref="LogStorage.CompactAsync"/>).</summary>
    internal ValueTask<long> CompactAsync(CancellationToken cancellationToken = default) => Log.CompactAsync(cancellationToken);

    /// <summary>
    /// A topic is about to be created by a publish: counts it, unless the engine has <see cref="MiniQueueOptions.MaxTopics"/>
    /// topics already (then throws; nothing is counted).
    /// </summary>
    internal void ReserveTopic(string name)
    {
        while (true)
        {
            var count = Volatile.Read(ref _createdTopics);
            if (count >= _maxTopics)
            {
                throw new MiniQueueTopicLimitException($"The topic '{name}' cannot be created: the engine has {count} topics, its maximum (MaxTopics).");
            }

            if (Interlocked.CompareExchange(ref _createdTopics, count + 1, count) == count)
            {
                return;
            }
        }
    }

    /// <summary>A publish that reserved a topic failed before it created it.</summary>
    internal void ReleaseTopic() => Interlocked.Decrement(ref _createdTopics);

    /// <summary>A topic was created without a publish (recovered from the log, or a dead-letter topic a message moved to): counted, never refused.</summary>
    internal void CountTopic() => Interlocked.Increment(ref _createdTopics);

    /// <summary>Drops a topic that was never created and has no consumers left (see <see cref="TopicQueue.RemoveConsumerLocked"/>).</summary>
    internal void Forget(TopicQueue topic) => _topics.TryRemove(new KeyValuePair<string, TopicQueue>(topic.Name, topic));

    private TopicQueue? FindTopic(string topic)
    {
        if (_topics.TryGetValue(topic, out var queue))
        {
            return queue;
        }

        TopicName.ThrowIfInvalid(topic, nameof(topic));
        return null;
    }

    private TopicQueue GetOrAddTopic(string topic)
    {
        if (_topics.TryGetValue(topic, out var queue))
        {
            return queue;
        }

        TopicName.ThrowIfInvalid(topic, nameof(topic));
        return _topics.GetOrAdd(topic, static (name, engine) => engine.NewTopic(name), this);
    }

    private TopicQueue NewTopic(string name) =>
        new(this, _journalOf, name, _time, _delayCheckPeriod, _policyOf(name), Interlocked.Increment(ref _lastTopicRank));

    /// <summary>
    /// Moves the messages <paramref name="source"/> set aside after their last allowed delivery to its dead-letter topic,
    /// holding both topics' locks (taken in rank order, so two moves in opposite directions cannot deadlock).
    /// </summary>
    internal void MoveDeadLetters(TopicQueue source)
    {
        LocalConsumer? toComplete = null;
        try
        {
            MoveLocked(source, source.Policy.DeadLetterTopic!, (TopicQueue target, ref LocalConsumer? complete) =>
            {
                source.ShipOutgoingLocked(target, ref complete);
                return true;
            }, ref toComplete);
        }
        catch (Exception exception)
        {
            // A thread-pool work item: nothing may escape. The messages stay at the front of their topic, and the next
            // take sets them aside (and schedules a move) again.
            source.AbandonMove();
            EngineLog.DeadLetterFailed(_logger, source.Name, exception);
        }
        finally
        {
            TopicQueue.CompleteAll(toComplete);
        }
    }

    /// <summary>A move between topics, run with both topics' locks held.</summary>
    private delegate T LockedMove<T>(TopicQueue target, ref LocalConsumer? toComplete);

    /// <summary>
    /// Runs <paramref name="move"/> from <paramref name="source"/> to the topic named <paramref name="target"/> with both
    /// topics' locks held, taken in rank order so that two moves in opposite directions cannot deadlock. A target that was
    /// retired meanwhile is looked up again.
    /// </summary>
    private T MoveLocked<T>(TopicQueue source, string target, LockedMove<T> move, ref LocalConsumer? toComplete)
    {
        while (true)
        {
            var to = GetOrAddTopic(target);
            var (first, second) = source.Rank < to.Rank ? (source, to) : (to, source);
            lock (first.SyncRoot)
            {
                lock (second.SyncRoot)
                {
                    if (!to.IsRetiredLocked)
                    {
                        return move(to, ref toComplete);
                    }
                }
            }

            Forget(to);
        }
    }

    /// <summary>
    /// Redrive: moves every message of <paramref name="topic"/>'s dead-letter topic (by default <c>&lt;topic&gt;.dead</c>)
    /// that no consumer holds back to the end of <paramref name="topic"/>, in the dead-letter topic's delivery order,
    /// each as a new message there (dackCount 0, no deliveries). Delayed ones move too, at once.
    /// </summary>
    /// <returns>How many messages moved (0 when the dead-letter topic does not exist).</returns>
    /// <exception cref="ArgumentException">The topic name is invalid.</exception>
    /// <exception cref="MiniQueueStoreException">The store could not take (or make durable) a move; the messages before it moved.</exception>
    /// <exception cref="ObjectDisposedException">The engine was disposed.</exception>
    public async ValueTask<int> RedriveAsync(string topic, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ThrowIfDisposed();
        TopicName.ThrowIfInvalid(topic, nameof(topic));
        if ((_policyOf(topic).DeadLetterTopic ?? TopicPolicy.DeadLetterTopicOf(topic)) is not { } deadLetter || FindTopic(deadLetter) is not { } source)
        {
            return 0;
        }

        if (!HasRoom)
        {
            await WaitForRoomAsync(cancellationToken).ConfigureAwait(false);
        }

        LocalConsumer? toComplete = null;
        int moved;
        long lastAddress = -1;
        try
        {
            moved = MoveLocked(source, topic, (TopicQueue target, ref LocalConsumer? complete) =>
                source.RedriveLocked(target, ref complete, out lastAddress), ref toComplete);
        }
        finally
        {
            TopicQueue.CompleteAll(toComplete);
        }

        if (moved > 0)
        {
            _metrics.Redriven(topic, moved);
            EngineLog.Redriven(_logger, moved, source.Name, topic);
            await source.WaitForMoveAsync(lastAddress, cancellationToken).ConfigureAwait(false);
        }

        return moved;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, typeof(MiniQueueEngine));
}
