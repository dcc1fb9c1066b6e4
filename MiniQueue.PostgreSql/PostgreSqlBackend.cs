using System.Collections.Concurrent;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MiniQueue.Backend;
using MiniQueue.Engine;
using Npgsql;
using NpgsqlTypes;

namespace MiniQueue.PostgreSql;

/// <summary>
/// Shared mode: a backend that keeps the queue's state in a PostgreSQL database (<see cref="PostgreSqlSchema"/>), so
/// that every process opened on the same database serves one queue. Concurrent publishes of a process share one
/// multi-row INSERT and one commit; a consumer takes the next message with <c>FOR UPDATE SKIP LOCKED</c>; waiting
/// consumers are woken by LISTEN/NOTIFY (<see cref="TopicSignals"/>). Due times come from the database's clock (or from
/// <see cref="MiniQueueOptions.TimeProvider"/> when it is not the system's, for tests). A process beats in
/// <c>miniqueue_processes</c>; the messages its consumers hold return to the front when it stops beating for
/// <see cref="ProcessLease"/>.
/// </summary>
internal sealed class PostgreSqlBackend : IQueueBackend
{
    /// <summary>The most publishes one INSERT takes.</summary>
    private const int MaxBatch = 512;

    /// <summary>How many batches of publishes, and of ACKs, may be in flight at once (each on its own connection).</summary>
    private const int Writers = 4;

    private readonly NpgsqlDataSource _database;
    private readonly TimeProvider _time;
    private readonly bool _systemClock;
    private readonly Func<string, TopicPolicy> _policyOf;
    private readonly ILogger _logger;
    private readonly Channel<PendingPublish> _publishes = Channel.CreateUnbounded<PendingPublish>(new UnboundedChannelOptions { SingleReader = false });
    private readonly Channel<PendingAck> _acks = Channel.CreateUnbounded<PendingAck>(new UnboundedChannelOptions { SingleReader = false });
    private readonly ConcurrentDictionary<PostgreSqlConsumer, byte> _consumers = new();
    private readonly ConcurrentDictionary<string, int> _consumerCounts = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, TopicTaker> _takers = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private Task[] _writers = [];
    private Task _heartbeat = Task.CompletedTask;
    private int _disposed;
    private volatile bool _reachable = true;

    private PostgreSqlBackend(NpgsqlDataSource database, MiniQueueOptions options, TimeSpan processLease)
    {
        _database = database;
        _time = options.TimeProvider;
        _systemClock = ReferenceEquals(_time, TimeProvider.System);
        _policyOf = TopicPolicy.Resolver(options);
        MaxMessageBytes = options.MaxMessageBytes;
        ProcessLease = processLease;
        _logger = (options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger("MiniQueue.PostgreSql");
        Signals = new TopicSignals(database, _logger);
    }

    /// <summary>This process's id in <c>miniqueue_processes</c>: the holder of its consumers' messages.</summary>
    public Guid ProcessId { get; } = Guid.NewGuid();

    /// <summary>How long a process may miss its heartbeat before the messages it holds return to the front.</summary>
    public TimeSpan ProcessLease { get; }

    public int MaxMessageBytes { get; }

    /// <summary>Whether the database answered the last statement (publishes are answered 503 while it does not).</summary>
    public bool IsWritable => Volatile.Read(ref _disposed) == 0 && _reachable;

    public bool IsDiskLow => false;

    internal TopicSignals Signals { get; }

    internal TimeProvider Time => _time;

    internal ILogger Logger => _logger;

    internal NpgsqlDataSource Database => _database;

    /// <summary>Opens the backend: migrates the schema, starts listening, beating and writing.</summary>
    public static async ValueTask<PostgreSqlBackend> OpenAsync(
        string connectionString, MiniQueueOptions options, TimeSpan processLease, CancellationToken cancellationToken)
    {
        options.Validate();
        // The slim builder keeps the package trimmable and Native AOT-compatible (the host publishes that way); arrays are
        // the one extra it needs (a batch of publishes is three arrays).
        var database = new NpgsqlSlimDataSourceBuilder(connectionString).EnableArrays().Build();
        var backend = new PostgreSqlBackend(database, options, processLease);
        try
        {
            await PostgreSqlSchema.MigrateAsync(database, cancellationToken).ConfigureAwait(false);
            await backend.BeatAsync(cancellationToken).ConfigureAwait(false);
            await backend.Signals.StartAsync(cancellationToken).ConfigureAwait(false);
            backend._writers =
            [
                .. Enumerable.Range(0, Writers).Select(_ => Task.Run(
                    () => RunBatchesAsync(backend._publishes.Reader, backend.InsertBatchAsync, backend.FailPublishes), CancellationToken.None)),
                .. Enumerable.Range(0, Writers).Select(_ => Task.Run(
                    () => RunBatchesAsync(backend._acks.Reader, backend.AckBatchAsync, backend.FailAcks), CancellationToken.None)),
            ];
            backend._heartbeat = Task.Run(backend.HeartbeatAsync, CancellationToken.None);
            return backend;
        }
        catch (Exception exception)
        {
            await backend.DisposeAsync().ConfigureAwait(false);
            if (exception is NpgsqlException or TimeoutException or System.Net.Sockets.SocketException)
            {
                throw new MiniQueueStoreException($"The PostgreSQL database could not be opened: {exception.Message}", exception);
            }

            throw;
        }
    }

    /// <summary>The policy of a topic (lease, max deliveries, dead-letter topic, idempotency window).</summary>
    internal TopicPolicy PolicyOf(string topic) => _policyOf(topic);

    /// <summary>
    /// The parameter <c>@now</c>: null with the system clock (the statements then use the database's <c>now()</c>), or
    /// the time of <see cref="MiniQueueOptions.TimeProvider"/> (a test's fake clock).
    /// </summary>
    internal NpgsqlParameter Now() => new("now", NpgsqlDbType.TimestampTz) { Value = _systemClock ? DBNull.Value : _time.GetUtcNow() };

    /// <summary>
    /// When a delayed message comes due: <paramref name="seconds"/> from now by the database's clock, or at
    /// <paramref name="due"/> by a test's clock.
    /// </summary>
    internal DueTime UntilDue(double seconds, DateTimeOffset due) =>
        new(TimeSpan.FromSeconds(Math.Max(0, seconds)), _systemClock ? null : due);

    /// <summary>Notes whether the database answered; a failure becomes a <see cref="MiniQueueStoreException"/>.</summary>
    internal MiniQueueStoreException Unreachable(Exception exception, string what)
    {
        if (exception is NpgsqlException or TimeoutException)
        {
            _reachable = false;
        }

        return exception as MiniQueueStoreException ?? new MiniQueueStoreException($"{what}: {exception.Message}", exception);
    }

    internal void Reached() => _reachable = true;

    public ValueTask PublishAsync(string topic, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken) =>
        new(PublishCore(topic, payload, null, cancellationToken));

    public async ValueTask<PublishResult> PublishAsync(string topic, ReadOnlyMemory<byte> payload, PublishOptions? options, CancellationToken cancellationToken)
    {
        if (options?.IdempotencyKey is not { } key)
        {
            await PublishCore(topic, payload, options, cancellationToken).ConfigureAwait(false);
            return new PublishResult(false);
        }

        var utf8 = IdempotencyKeys.ToUtf8(key)
            ?? throw new ArgumentException($"An idempotency key must be 1 to {PublishOptions.MaxIdempotencyKeyBytes} bytes of UTF-8.", nameof(options));
        Check(topic, payload, cancellationToken);
        return new PublishResult(!await PublishKeyedAsync(topic, payload.ToArray(), DelaySeconds(options), utf8, cancellationToken).ConfigureAwait(false));
    }

    private void Check(string topic, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ThrowIfDisposed();
        TopicName.ThrowIfInvalid(topic, nameof(topic));
        if (payload.Length > MaxMessageBytes)
        {
            throw new ArgumentException($"message too large: {payload.Length} bytes, the maximum is {MaxMessageBytes}.", nameof(payload));
        }
    }

    private static double DelaySeconds(PublishOptions? options) =>
        options is { Delay: var delay } && delay > TimeSpan.Zero ? delay.TotalSeconds : 0;

    private Task PublishCore(string topic, ReadOnlyMemory<byte> payload, PublishOptions? options, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled(cancellationToken);
        }

        Check(topic, payload, cancellationToken);
        var publish = new PendingPublish(topic, payload.ToArray(), DelaySeconds(options));
        ObjectDisposedException.ThrowIf(!_publishes.Writer.TryWrite(publish), typeof(MiniQueueEngine));

        return publish.Done.Task;
    }

    /// <summary>
    /// Runs batches: takes what waits in <paramref name="reader"/>, up to <see cref="MaxBatch"/>, and executes it as one
    /// statement (one round trip, one commit); <paramref name="fail"/> hears of a batch that failed. Repeats until the
    /// channel is completed.
    /// </summary>
    private static async Task RunBatchesAsync<T>(ChannelReader<T> reader, Func<List<T>, Task> execute, Action<List<T>, Exception> fail)
    {
        var batch = new List<T>(MaxBatch);
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            batch.Clear();
            while (batch.Count < MaxBatch && reader.TryRead(out var item))
            {
                batch.Add(item);
            }

            if (batch.Count == 0)
            {
                continue;
            }

            try
            {
                await execute(batch).ConfigureAwait(false);
            }
            catch (Exception exception)
            {
                fail(batch, exception);
            }
        }
    }

    /// <summary>Publishes a batch with one INSERT and one commit; each publish completes after it.</summary>
    private async Task InsertBatchAsync(List<PendingPublish> batch)
    {
        await InsertAsync(batch).ConfigureAwait(false);
        Reached();
        foreach (var publish in batch)
        {
            publish.Done.TrySetResult();
        }

        foreach (var topic in batch.Select(static publish => publish.Topic).Distinct())
        {
            Signals.Signal(topic);
        }
    }

    private void FailPublishes(List<PendingPublish> batch, Exception exception)
    {
        var error = Unreachable(exception, "The message was not published: the database did not take it");
        PostgreSqlLog.PublishFailed(_logger, batch[0].Topic, exception);
        foreach (var publish in batch)
        {
            publish.Done.TrySetException(error);
        }
    }

    /// <summary>
    /// ACKs a held message (named by its hold): false when that hold had ended (its lease passed, or its process was
    /// taken for dead). Concurrent ACKs of this process share one DELETE and one commit.
    /// </summary>
    internal Task<bool> AckAsync(long id, Guid hold)
    {
        var ack = new PendingAck(id, hold);
        ObjectDisposedException.ThrowIf(!_acks.Writer.TryWrite(ack), typeof(MiniQueueEngine));
        return ack.Done.Task;
    }

    private const string AckSql = """
        DELETE FROM miniqueue_messages AS m
        USING unnest(@ids, @holds) AS acked(id, hold)
        WHERE m.id = acked.id AND m.hold = acked.hold
        RETURNING m.id
        """;

    private async Task AckBatchAsync(List<PendingAck> batch)
    {
        var deleted = new HashSet<long>();
        await using (var command = _database.CreateCommand(AckSql))
        {
            command.Parameters.Add(new NpgsqlParameter<long[]>("ids", [.. batch.Select(static ack => ack.Id)]));
            command.Parameters.Add(new NpgsqlParameter<Guid[]>("holds", [.. batch.Select(static ack => ack.Hold)]));
            await using var reader = await command.ExecuteReaderAsync().ConfigureAwait(false);
            while (await reader.ReadAsync().ConfigureAwait(false))
            {
                deleted.Add(reader.GetInt64(0));
            }
        }

        Reached();
        foreach (var ack in batch)
        {
            ack.Done.TrySetResult(deleted.Contains(ack.Id));
        }
    }

    private void FailAcks(List<PendingAck> batch, Exception exception)
    {
        var error = Unreachable(exception, "The ACK failed; the consumer still holds its message");
        foreach (var ack in batch)
        {
            ack.Done.TrySetException(error);
        }
    }

    private const string InsertSql = """
        WITH rows AS (
            SELECT nextval('miniqueue_seq') AS id, t, b, d
            FROM unnest(@topics, @bodies, @delays) WITH ORDINALITY AS u(t, b, d, o)
            ORDER BY o),
        ins AS (
            INSERT INTO miniqueue_messages (id, topic, body, cls, due, seq)
            SELECT id, t, b, CASE WHEN d > 0 THEN 1 ELSE 2 END,
                   CASE WHEN d > 0 THEN COALESCE(@now, now()) + make_interval(secs => d) END, id
            FROM rows
            RETURNING topic),
        topics AS (INSERT INTO miniqueue_topics (name) SELECT DISTINCT t FROM rows ON CONFLICT DO NOTHING)
        SELECT pg_notify('miniqueue', t) FROM (SELECT DISTINCT topic AS t FROM ins) AS changed
        """;

    private async Task InsertAsync(List<PendingPublish> batch)
    {
        await using var command = _database.CreateCommand(InsertSql);
        command.Parameters.Add(new NpgsqlParameter<string[]>("topics", [.. batch.Select(static publish => publish.Topic)]));
        command.Parameters.Add(new NpgsqlParameter<byte[][]>("bodies", [.. batch.Select(static publish => publish.Body)]));
        command.Parameters.Add(new NpgsqlParameter<double[]>("delays", [.. batch.Select(static publish => publish.DelaySeconds)]));
        command.Parameters.Add(Now());
        await command.ExecuteNonQueryAsync().ConfigureAwait(false);
    }

    private const string InsertKeyedSql = """
        WITH key AS (
            INSERT INTO miniqueue_keys (topic, key, expires)
            VALUES (@topic, @key, COALESCE(@now, now()) + make_interval(secs => @window))
            ON CONFLICT (topic, key) DO UPDATE SET expires = EXCLUDED.expires
                WHERE miniqueue_keys.expires <= COALESCE(@now, now())
            RETURNING 1),
        row AS (SELECT nextval('miniqueue_seq') AS id WHERE EXISTS (SELECT 1 FROM key)),
        ins AS (
            INSERT INTO miniqueue_messages (id, topic, body, cls, due, seq)
            SELECT id, @topic, @body, CASE WHEN @delay > 0 THEN 1 ELSE 2 END,
                   CASE WHEN @delay > 0 THEN COALESCE(@now, now()) + make_interval(secs => @delay) END, id
            FROM row
            RETURNING topic),
        topics AS (INSERT INTO miniqueue_topics (name) SELECT topic FROM ins ON CONFLICT DO NOTHING)
        SELECT EXISTS (SELECT 1 FROM ins), (SELECT pg_notify('miniqueue', topic) FROM ins)
        """;

    /// <summary>A publish with an idempotency key (not batched): false when the key repeats one within its window.</summary>
    private async Task<bool> PublishKeyedAsync(string topic, byte[] body, double delay, byte[] key, CancellationToken cancellationToken)
    {
        bool published;
        try
        {
            await using var command = _database.CreateCommand(InsertKeyedSql);
            command.Parameters.Add(new NpgsqlParameter<string>("topic", topic));
            command.Parameters.Add(new NpgsqlParameter<byte[]>("key", key));
            command.Parameters.Add(new NpgsqlParameter<byte[]>("body", body));
            command.Parameters.Add(new NpgsqlParameter<double>("delay", delay));
            command.Parameters.Add(new NpgsqlParameter<double>("window", TimeSpan.FromTicks(_policyOf(topic).IdempotencyWindowTicks).TotalSeconds));
            command.Parameters.Add(Now());
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            published = reader.GetBoolean(0);
            Reached();
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            PostgreSqlLog.PublishFailed(_logger, topic, exception);
            throw Unreachable(exception, "The message was not published: the database did not take it");
        }

        if (published)
        {
            Signals.Signal(topic);
        }
        else
        {
            EngineLog.Duplicate(_logger, topic);
        }

        return published;
    }

    public IQueueConsumer Subscribe(string topic)
    {
        ThrowIfDisposed();
        TopicName.ThrowIfInvalid(topic, nameof(topic));
        var consumer = new PostgreSqlConsumer(this, topic);
        _consumers[consumer] = 0;
        _consumerCounts.AddOrUpdate(topic, 1, static (_, count) => count + 1);
        return consumer;
    }

    /// <summary>The taker of a topic's messages for this process's consumers.</summary>
    internal TopicTaker TakerOf(string topic) => _takers.GetOrAdd(topic, static (name, backend) => new TopicTaker(backend, name), this);

    /// <summary>A held message (named by its hold) back to the front of its topic, as NACK puts it.</summary>
    internal const string ReturnSql = """
        UPDATE miniqueue_messages
        SET cls = 0, due = NULL, seq = -nextval('miniqueue_seq'), holder = NULL, hold = NULL, lease_until = NULL
        WHERE id = @id AND hold = @hold
        RETURNING pg_notify('miniqueue', topic)
        """;

    /// <summary>A take undone: the message keeps its place in its topic's order, and the take is not a delivery.</summary>
    private const string UntakeSql = """
        UPDATE miniqueue_messages
        SET holder = NULL, hold = NULL, lease_until = NULL, deliveries = deliveries - 1
        WHERE id = @id AND hold = @hold
        RETURNING pg_notify('miniqueue', topic)
        """;

    /// <summary>
    /// Returns a held message to the front of its topic, as NACK does (a lease that passed, a consumer disposed while
    /// holding). Best effort: when the database is away, the holder's heartbeat returns it if this process goes.
    /// </summary>
    internal Task ReturnAsync(string topic, long id, Guid hold) => ReleaseAsync(ReturnSql, topic, id, hold);

    /// <summary>
    /// Undoes a take whose message reached no consumer (its receive went meanwhile): the message is where it was in its
    /// topic's order, and the take does not count as a delivery. Best effort, like <see cref="ReturnAsync"/>.
    /// </summary>
    internal Task UntakeAsync(string topic, long id, Guid hold) => ReleaseAsync(UntakeSql, topic, id, hold);

    /// <summary>Ends a hold with <paramref name="sql"/> (<see cref="ReturnSql"/> or <see cref="UntakeSql"/>) and wakes the topic's taker.</summary>
    private async Task ReleaseAsync(string sql, string topic, long id, Guid hold)
    {
        try
        {
            await using var command = _database.CreateCommand(sql);
            command.Parameters.Add(new NpgsqlParameter<long>("id", id));
            command.Parameters.Add(new NpgsqlParameter<Guid>("hold", hold));
            if (await command.ExecuteNonQueryAsync().ConfigureAwait(false) == 1)
            {
                Signals.Signal(topic);
            }
        }
        catch (Exception exception) when (exception is NpgsqlException or TimeoutException or ObjectDisposedException)
        {
            _ = Unreachable(exception, "release");
        }
    }

    /// <summary>A consumer ended.</summary>
    internal void Remove(PostgreSqlConsumer consumer)
    {
        if (_consumers.TryRemove(consumer, out _))
        {
            _consumerCounts.AddOrUpdate(consumer.Topic, 0, static (_, count) => count - 1);
            _consumerCounts.TryRemove(new KeyValuePair<string, int>(consumer.Topic, 0));
        }
    }

    public async ValueTask<int> PurgeAsync(string topic, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ThrowIfDisposed();
        TopicName.ThrowIfInvalid(topic, nameof(topic));
        try
        {
            await using var command = _database.CreateCommand("DELETE FROM miniqueue_messages WHERE topic = @topic AND hold IS NULL");
            command.Parameters.Add(new NpgsqlParameter<string>("topic", topic));
            var count = await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            Reached();
            return count;
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            throw Unreachable(exception, $"The purge of topic '{topic}' failed");
        }
    }

    private const string RedriveSql = """
        WITH picked AS MATERIALIZED (
            SELECT id FROM miniqueue_messages
            WHERE topic = @dead AND hold IS NULL
            ORDER BY cls, due, seq
            FOR UPDATE),
        numbered AS MATERIALIZED (SELECT id, nextval('miniqueue_seq') AS seq FROM picked),
        moved AS (
            UPDATE miniqueue_messages AS m
            SET topic = @topic, cls = 2, due = NULL, seq = numbered.seq, dack_count = 0, deliveries = 0
            FROM numbered WHERE m.id = numbered.id
            RETURNING 1),
        topics AS (INSERT INTO miniqueue_topics (name) SELECT @topic WHERE EXISTS (SELECT 1 FROM moved) ON CONFLICT DO NOTHING)
        SELECT count(*)::integer, (SELECT pg_notify('miniqueue', @topic)) FROM moved
        """;

    public async ValueTask<int> RedriveAsync(string topic, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ThrowIfDisposed();
        TopicName.ThrowIfInvalid(topic, nameof(topic));
        if ((_policyOf(topic).DeadLetterTopic ?? TopicPolicy.DeadLetterTopicOf(topic)) is not { } deadLetter)
        {
            return 0;
        }

        int moved;
        try
        {
            await using var command = _database.CreateCommand(RedriveSql);
            command.Parameters.Add(new NpgsqlParameter<string>("topic", topic));
            command.Parameters.Add(new NpgsqlParameter<string>("dead", deadLetter));
            moved = (int)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
            Reached();
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            throw Unreachable(exception, $"The redrive of topic '{topic}' failed");
        }

        if (moved > 0)
        {
            PostgreSqlLog.Redriven(_logger, moved, deadLetter, topic);
            Signals.Signal(topic);
        }

        return moved;
    }

    private const string StatsSql = """
        SELECT count(*) FILTER (WHERE hold IS NULL AND (cls <> 1 OR due <= n))::integer,
               count(*) FILTER (WHERE hold IS NOT NULL)::integer,
               count(*) FILTER (WHERE hold IS NULL AND cls = 1 AND due > n)::integer
        FROM miniqueue_messages, (SELECT COALESCE(@now, now()) AS n) AS clock
        WHERE topic = @topic
        """;

    /// <summary>The topic's counts now (ready, held and delayed from the database; consumers of this process).</summary>
    public TopicStats GetStats(string topic)
    {
        TopicName.ThrowIfInvalid(topic, nameof(topic));
        ThrowIfDisposed();
        try
        {
            using var command = _database.CreateCommand(StatsSql);
            command.Parameters.Add(new NpgsqlParameter<string>("topic", topic));
            command.Parameters.Add(Now());
            using var reader = command.ExecuteReader();
            reader.Read();
            var stats = new TopicStats(reader.GetInt32(0), reader.GetInt32(1), reader.GetInt32(2), _consumerCounts.GetValueOrDefault(topic));
            Reached();
            return stats;
        }
        catch (Exception exception)
        {
            throw Unreachable(exception, $"The counts of topic '{topic}' could not be read");
        }
    }

    public IReadOnlyList<string> GetTopics()
    {
        ThrowIfDisposed();
        try
        {
            using var command = _database.CreateCommand("SELECT name FROM miniqueue_topics ORDER BY name COLLATE \"C\"");
            using var reader = command.ExecuteReader();
            var topics = new List<string>();
            while (reader.Read())
            {
                topics.Add(reader.GetString(0));
            }

            Reached();
            return topics;
        }
        catch (Exception exception)
        {
            throw Unreachable(exception, "The topics could not be read");
        }
    }

    private async Task HeartbeatAsync()
    {
        var every = ProcessLease / 3;
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(every, _stopping.Token).ConfigureAwait(false);
                await BeatAsync(_stopping.Token).ConfigureAwait(false);
                Reached();
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                break;
            }
            catch (Exception exception)
            {
                _ = Unreachable(exception, "heartbeat");
                PostgreSqlLog.HeartbeatFailed(_logger, exception);
            }
        }
    }

    private const string BeatSql = """
        INSERT INTO miniqueue_processes (id, beat) VALUES (@process, now()) ON CONFLICT (id) DO UPDATE SET beat = now();
        WITH dead AS (
            DELETE FROM miniqueue_processes WHERE beat < now() - make_interval(secs => @lease) RETURNING id),
        returned AS (
            UPDATE miniqueue_messages
            SET cls = 0, due = NULL, seq = -nextval('miniqueue_seq'), holder = NULL, hold = NULL, lease_until = NULL
            WHERE holder IN (SELECT id FROM dead) OR lease_until < COALESCE(@now, now()) - make_interval(secs => @lease)
            RETURNING topic)
        SELECT topic, count(*)::integer, pg_notify('miniqueue', topic) FROM returned GROUP BY topic;
        DELETE FROM miniqueue_keys WHERE expires < COALESCE(@now, now()) - interval '1 hour';
        """;

    /// <summary>
    /// The heartbeat: this process is alive; the messages held by processes that stopped beating for
    /// <see cref="ProcessLease"/>, and those whose own lease is overdue by as much (their holder could not return them),
    /// return to the front of their topics; long-expired idempotency keys go.
    /// </summary>
    private async Task BeatAsync(CancellationToken cancellationToken)
    {
        await using var command = _database.CreateCommand(BeatSql);
        command.Parameters.Add(new NpgsqlParameter<Guid>("process", ProcessId));
        command.Parameters.Add(new NpgsqlParameter<double>("lease", ProcessLease.TotalSeconds));
        command.Parameters.Add(Now());
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var returned = 0;
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            returned += reader.GetInt32(1);
            Signals.Signal(reader.GetString(0));
        }

        if (returned > 0)
        {
            PostgreSqlLog.Reclaimed(_logger, returned);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        foreach (var consumer in _consumers.Keys)
        {
            await consumer.DisposeAsync().ConfigureAwait(false);
        }

        await StopWorkAsync().ConfigureAwait(false);
        try
        {
            await using var command = _database.CreateCommand("DELETE FROM miniqueue_processes WHERE id = @process");
            command.Parameters.Add(new NpgsqlParameter<Guid>("process", ProcessId));
            await command.ExecuteNonQueryAsync().ConfigureAwait(false);
        }
        catch (NpgsqlException)
        {
            // The database is away: the other processes return this one's messages when its heartbeat is old enough.
        }

        await _database.DisposeAsync().ConfigureAwait(false);
        _stopping.Dispose();
    }

    /// <summary>
    /// For tests: the process goes without a word, as if killed: no NACK of what its consumers hold, no heartbeat, no
    /// notifications; the other processes return its holds once its heartbeat is a process lease old.
    /// </summary>
    internal async Task AbandonAsync()
    {
        Interlocked.Exchange(ref _disposed, 1);
        await StopWorkAsync().ConfigureAwait(false);
        await _database.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Stops the background work: the batch writers (after what they were given), the heartbeat, the listener.</summary>
    private async Task StopWorkAsync()
    {
        _publishes.Writer.TryComplete();
        _acks.Writer.TryComplete();
        await Task.WhenAll(_writers).ConfigureAwait(false);
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _heartbeat.ConfigureAwait(false);
        await Signals.DisposeAsync().ConfigureAwait(false);
    }

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(IsDisposed, typeof(MiniQueueEngine));

    internal bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>An ACK waiting for its batch: the message and its hold; the result says whether the hold was still on.</summary>
    private sealed class PendingAck(long id, Guid hold)
    {
        public long Id { get; } = id;

        public Guid Hold { get; } = hold;

        public TaskCompletionSource<bool> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>A publish waiting for its batch.</summary>
    private sealed class PendingPublish(string topic, byte[] body, double delaySeconds)
    {
        public string Topic { get; } = topic;

        public byte[] Body { get; } = body;

        public double DelaySeconds { get; } = delaySeconds;

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
