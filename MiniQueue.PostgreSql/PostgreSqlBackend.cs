using System.Collections.Concurrent;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using MiniQueue.Backend;
using MiniQueue.Engine;
using MiniQueue.Storage;
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
/// <remarks>
/// Publishes commit as the database's <c>synchronous_commit</c> has it (201 means durable). Takes, settles and returns
/// commit with <c>synchronous_commit=off</c> (<see cref="Relaxed"/>): as PROTOCOL.md allows, they may still be on their
/// way to disk when the next message is delivered, and a database crash may undo the last of them (the message is
/// delivered again). So that none of them leaves a message held by a process that no longer holds it, a process
/// reconciles its holds after the database was away (<see cref="ReconcileAsync"/>). An ACK does not wait for its DELETE:
/// it rides on the next take of any topic of the process, which commits it before handing out the next message, or on
/// its own statement a moment later (<see cref="AckLinger"/>).
/// </remarks>
internal sealed class PostgreSqlBackend : IQueueBackend
{
    /// <summary>The most publishes one INSERT takes.</summary>
    private const int MaxBatch = 512;

    /// <summary>How many batches of publishes may be in flight at once (each on its own connection).</summary>
    private const int Writers = 4;

    /// <summary>The first wait before a statement is tried again while the database is away (then twice as long each time).</summary>
    internal static readonly TimeSpan FirstRetry = TimeSpan.FromMilliseconds(50);

    /// <summary>How long an ACK waits for a take to carry it before it goes in a statement of its own.</summary>
    private static readonly TimeSpan AckLinger = TimeSpan.FromMilliseconds(5);

    private readonly NpgsqlDataSource _database;
    private readonly NpgsqlDataSource _relaxed;
    private readonly TimeProvider _time;
    private readonly bool _systemClock;
    private readonly Func<string, TopicPolicy> _policyOf;
    private readonly ILogger _logger;
    private readonly Channel<PendingPublish> _publishes = Channel.CreateUnbounded<PendingPublish>(new UnboundedChannelOptions { SingleReader = false });
    private readonly Lock _acksLock = new();
    private List<PendingAck> _pendingAcks = [];
    private Task _ackFlight = Task.CompletedTask;
    private readonly Channel<bool> _acksWaiting = WakeUps.Create();
    private readonly Channel<bool> _consumersChanged = WakeUps.Create();
    private readonly ConcurrentDictionary<long, byte> _live = new();
    private readonly ConcurrentDictionary<Guid, byte> _taking = new();
    private readonly Lock _holdsLock = new();
    private readonly ulong _holdPrefix = BitConverter.ToUInt64(Guid.NewGuid().ToByteArray());
    private ulong _holdCount;
    private int _reconcile;
    private readonly ConcurrentDictionary<PostgreSqlConsumer, byte> _consumers = new();
    private readonly ConcurrentDictionary<string, int> _consumerCounts = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, TopicTaker> _takers = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<TaskCompletionSource, string> _takesUnderWay = new();
    private readonly ConcurrentDictionary<string, byte> _knownTopics = new(StringComparer.Ordinal);
    private readonly int? _maxTopics;
    private readonly CancellationTokenSource _stopping = new();
    private readonly MiniQueueMetrics _metrics;
    private Task[] _writers = [];
    private Task _heartbeat = Task.CompletedTask;
    private int _disposed;
    private volatile bool _reachable = true;

    private PostgreSqlBackend(NpgsqlDataSource database, NpgsqlDataSource relaxed, MiniQueueOptions options, TimeSpan processLease)
    {
        _database = database;
        _relaxed = relaxed;
        _time = options.TimeProvider;
        _systemClock = ReferenceEquals(_time, TimeProvider.System);
        _policyOf = TopicPolicy.Resolver(options);
        MaxMessageBytes = options.MaxMessageBytes;
        _maxTopics = options.MaxTopics;
        ProcessLease = processLease;
        _logger = (options.LoggerFactory ?? NullLoggerFactory.Instance).CreateLogger("MiniQueue.PostgreSql");
        Signals = new TopicSignals(database, _logger);
        Settles = new SettleWriter(this);
        var (meter, ownsMeter) = MiniQueueMetrics.CreateMeter(options);
        _metrics = new MiniQueueMetrics(meter, ownsMeter, GetTopicsWithStats, static () => 0, static () => null, options);
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

    /// <summary>The NACKs, BACKs, DACKs, TOUCHes and returns of this process, batched.</summary>
    internal SettleWriter Settles { get; }

    internal TimeProvider Time => _time;

    internal ILogger Logger => _logger;

    /// <summary>
    /// The engine's instruments, as a local engine has them: the counters are this process's (sum them over the
    /// processes), the ready, held and delayed gauges the database's (the same on every process), consumers every process's.
    /// </summary>
    internal MiniQueueMetrics Metrics => _metrics;

    /// <summary>
    /// Connections whose commits do not wait for the disk (<c>synchronous_commit=off</c>): for takes, settles, returns and
    /// the heartbeat, which PROTOCOL.md lets be undone by a crash (the message is delivered again).
    /// </summary>
    internal NpgsqlDataSource Relaxed => _relaxed;

    /// <summary>Opens the backend: migrates the schema, starts listening, beating and writing.</summary>
    public static async ValueTask<PostgreSqlBackend> OpenAsync(
        string connectionString, MiniQueueOptions options, TimeSpan processLease, CancellationToken cancellationToken)
    {
        options.Validate();
        var backend = new PostgreSqlBackend(Source(connectionString, relaxed: false), Source(connectionString, relaxed: true), options, processLease);
        try
        {
            await PostgreSqlSchema.MigrateAsync(backend._database, cancellationToken).ConfigureAwait(false);
            await backend.BeatAsync(cancellationToken).ConfigureAwait(false);
            await backend.Signals.StartAsync(cancellationToken).ConfigureAwait(false);
            backend._writers =
            [
                .. Enumerable.Range(0, Writers).Select(_ => Task.Run(
                    () => RunBatchesAsync(backend._publishes.Reader, backend.InsertBatchAsync, backend.FailPublishes), CancellationToken.None)),
                .. backend.Settles.Start(),
                Task.Run(backend.FlushAcksAsync, CancellationToken.None),
                Task.Run(backend.WriteConsumersAsync, CancellationToken.None),
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

    /// <summary>
    /// A data source on <paramref name="connectionString"/>. The slim builder keeps the package trimmable and Native
    /// AOT-compatible (the host publishes that way); arrays are the one extra it needs (a batch is a few arrays). MiniQueue
    /// changes no session state, so a pooled connection need not be reset. Its statements are few and run again and again:
    /// unless the connection string says otherwise, Npgsql prepares them (parsing and planning a take cost more than
    /// running it). A prepared statement keeps a generic plan, though, and one made while the table was nearly empty scans
    /// and sorts the whole table (measured: 20 ms a take at 50,000 rows, until the next ANALYZE). Every statement of
    /// MiniQueue's that reads messages by topic or id has an index for it, so its sessions plan without sequential scans
    /// (<c>enable_seqscan=off</c>; the few statements with no index to use, such as the dead-process scan, still scan).
    /// Planning every execution instead (<c>plan_cache_mode=force_custom_plan</c>) cost about a quarter of the
    /// consume rate.
    /// </summary>
    private static NpgsqlDataSource Source(string connectionString, bool relaxed)
    {
        var builder = new NpgsqlSlimDataSourceBuilder(connectionString).EnableArrays();
        builder.ConnectionStringBuilder.NoResetOnClose = true;
        builder.ConnectionStringBuilder.Options = $"{builder.ConnectionStringBuilder.Options} -c enable_seqscan=off".TrimStart();
        var given = new System.Data.Common.DbConnectionStringBuilder { ConnectionString = connectionString }.Keys.Cast<string>();
        if (!given.Any(static key => key.Replace(" ", "", StringComparison.Ordinal).Equals("MaxAutoPrepare", StringComparison.OrdinalIgnoreCase)))
        {
            builder.ConnectionStringBuilder.MaxAutoPrepare = 32;
            builder.ConnectionStringBuilder.AutoPrepareMinUsages = 2;
        }

        if (relaxed)
        {
            builder.ConnectionStringBuilder.Options = $"{builder.ConnectionStringBuilder.Options} -c synchronous_commit=off".TrimStart();
        }

        return builder.Build();
    }

    /// <summary>The wait after <paramref name="retry"/>: twice as long, up to 2 s.</summary>
    internal static TimeSpan NextRetry(TimeSpan retry) => TimeSpan.FromTicks(Math.Min(retry.Ticks * 2, TimeSpan.FromSeconds(2).Ticks));

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
            Volatile.Write(ref _reconcile, 1);
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
    internal static async Task RunBatchesAsync<T>(ChannelReader<T> reader, Func<List<T>, Task> execute, Action<List<T>, Exception> fail)
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
        if (_maxTopics is not null && batch.Any(publish => !_knownTopics.ContainsKey(publish.Topic)))
        {
            var refused = await RefuseNewTopicsAsync([.. batch.Select(static publish => publish.Topic).Distinct()]).ConfigureAwait(false);
            if (refused.Count > 0)
            {
                foreach (var publish in batch.Where(publish => refused.Contains(publish.Topic)))
                {
                    publish.Done.TrySetException(TopicLimit(publish.Topic));
                }

                batch.RemoveAll(publish => refused.Contains(publish.Topic));
                if (batch.Count == 0)
                {
                    return;
                }
            }
        }

        await InsertAsync(batch).ConfigureAwait(false);
        Reached();
        if (_maxTopics is not null)
        {
            foreach (var publish in batch)
            {
                _knownTopics[publish.Topic] = 0;
            }
        }

        foreach (var publish in batch)
        {
            _metrics.Published(publish.Topic, publish.Started);
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
    /// ACKs a held message (named by its hold) without waiting for the database: the DELETE rides on the next take of
    /// this process (<see cref="DrainAcks"/>), which commits it before it hands out a message, or goes on its own after
    /// <see cref="AckLinger"/>. It stays among this process's holds until it is done, and is retried while the database
    /// is away; if this process dies first, the message is delivered again (at-least-once).
    /// </summary>
    internal void Ack(long id, Guid hold)
    {
        ThrowIfDisposed();
        lock (_acksLock)
        {
            _pendingAcks.Add(new PendingAck(id, hold));
        }

        _acksWaiting.Writer.TryWrite(true);
    }

    /// <summary>
    /// Takes the ACKs waiting for a statement, for a take to carry: it must first wait for <c>Flight</c> (a flush of
    /// earlier ACKs), so that its commit follows every ACK made before it started.
    /// </summary>
    internal (List<PendingAck>? Acks, Task Flight) DrainAcks()
    {
        lock (_acksLock)
        {
            if (_pendingAcks.Count == 0)
            {
                return (null, _ackFlight);
            }

            var acks = _pendingAcks;
            _pendingAcks = [];
            return (acks, _ackFlight);
        }
    }

    /// <summary>ACKs that a statement could not carry wait for the next (the message stays held by this process).</summary>
    internal void RequeueAcks(List<PendingAck> acks)
    {
        lock (_acksLock)
        {
            _pendingAcks.AddRange(acks);
        }

        _acksWaiting.Writer.TryWrite(true);
    }

    /// <summary>The ACKs carried by a statement that committed: their messages are gone, no longer this process's.</summary>
    internal void Acked(List<PendingAck> acks)
    {
        foreach (var ack in acks)
        {
            _live.TryRemove(ack.Id, out _);
        }
    }

    /// <summary>The SET list that puts a held message back at the front of its topic, as NACK does.</summary>
    private const string ToFront = "cls = 0, due = NULL, seq = -nextval('miniqueue_seq'), holder = NULL, hold = NULL, lease_until = NULL";

    /// <summary>The rows of a statement's <c>returned</c> (topics of messages back at the front), read by <see cref="ReadReturnedAsync"/>.</summary>
    private const string ReturnedByTopic = "SELECT topic, count(*)::integer, pg_notify('miniqueue', topic) FROM returned GROUP BY topic";

    internal const string AckSql = """
        DELETE FROM miniqueue_messages AS m
        USING unnest(@ack_ids, @ack_holds) AS acked(id, hold)
        WHERE m.id = acked.id AND m.hold = acked.hold
        """;

    /// <summary>The DELETE of <paramref name="acks"/>, for a batch.</summary>
    internal static NpgsqlBatchCommand AckCommand(List<PendingAck> acks)
    {
        var command = new NpgsqlBatchCommand(AckSql);
        command.Parameters.Add(new NpgsqlParameter<long[]>("ack_ids", [.. acks.Select(static ack => ack.Id)]));
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("ack_holds", [.. acks.Select(static ack => ack.Hold)]));
        return command;
    }

    /// <summary>
    /// Sends the ACKs that no take carried within <see cref="AckLinger"/>; while the database is away, tries again less and
    /// less often. Ends when the backend stops, after a last try.
    /// </summary>
    private async Task FlushAcksAsync()
    {
        var retry = FirstRetry;
        while (true)
        {
            var stopping = _stopping.IsCancellationRequested;
            if (!stopping)
            {
                try
                {
                    await _acksWaiting.Reader.ReadAsync(_stopping.Token).ConfigureAwait(false);
                    await Task.Delay(AckLinger, _stopping.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    stopping = true;
                }
            }

            List<PendingAck> acks;
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_acksLock)
            {
                acks = _pendingAcks;
                _pendingAcks = [];
                _ackFlight = done.Task;
            }

            var failed = false;
            try
            {
                if (acks.Count > 0)
                {
                    await using var batch = _relaxed.CreateBatch();
                    batch.BatchCommands.Add(AckCommand(acks));
                    await batch.ExecuteNonQueryAsync().ConfigureAwait(false);
                    Reached();
                    Acked(acks);
                }

                retry = FirstRetry;
            }
            catch (Exception exception) when (!stopping)
            {
                _ = Unreachable(exception, "ACK");
                PostgreSqlLog.AckFailed(_logger, acks.Count, exception);
                RequeueAcks(acks);
                failed = true;
            }
            catch (Exception exception)
            {
                // Stopping with the database away: these ACKs are lost, and their messages delivered again.
                PostgreSqlLog.AckFailed(_logger, acks.Count, exception);
            }
            finally
            {
                done.SetResult();
            }

            if (stopping)
            {
                return;
            }

            if (failed)
            {
                try
                {
                    await Task.Delay(retry, _stopping.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }

                retry = NextRetry(retry);
            }
        }
    }

    /// <summary>A hold id of this process: its prefix, then a count, so that later holds compare greater in the database.</summary>
    internal Guid NextHold()
    {
        Span<byte> bytes = stackalloc byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(bytes, _holdPrefix);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(bytes[8..], Interlocked.Increment(ref _holdCount));
        return new Guid(bytes, bigEndian: true);
    }

    /// <summary>A take is about to hold messages under a new hold id: until <see cref="Taken"/>, that id is this process's.</summary>
    internal Guid StartTake()
    {
        lock (_holdsLock)
        {
            var hold = NextHold();
            _taking[hold] = 0;
            return hold;
        }
    }

    /// <summary>A take came back: the messages it took are this process's (until settled or given back), not the hold id.</summary>
    internal void Taken(Guid hold, IEnumerable<long> ids)
    {
        foreach (var id in ids)
        {
            _live[id] = 0;
        }

        _taking.TryRemove(hold, out _);
    }

    /// <summary>A message this process held is settled or given back (or the statement that would have failed).</summary>
    internal void Released(long id) => _live.TryRemove(id, out _);

    private const string ReconcileSql = $"""
        WITH returned AS (
            UPDATE miniqueue_messages SET {ToFront}
            WHERE holder = @process AND hold < @cutoff AND hold <> ALL(@taking) AND id <> ALL(@live)
            RETURNING topic)
        {ReturnedByTopic}
        """;

    /// <summary>
    /// After the database was away: the messages the database says this process holds but none of its consumers does (a
    /// return or an ACK that failed, a settle that a crash undid) return to the front. Holds made from now on, takes still
    /// under way and the messages its consumers hold or are settling are left alone.
    /// </summary>
    private async Task ReconcileAsync(CancellationToken cancellationToken)
    {
        Guid cutoff;
        Guid[] taking;
        long[] live;
        lock (_holdsLock)
        {
            cutoff = NextHold();
            taking = [.. _taking.Keys];
            live = [.. _live.Keys];
        }

        await using var command = _relaxed.CreateCommand(ReconcileSql);
        command.Parameters.Add(new NpgsqlParameter<Guid>("process", ProcessId));
        command.Parameters.Add(new NpgsqlParameter<Guid>("cutoff", cutoff));
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("taking", taking));
        command.Parameters.Add(new NpgsqlParameter<long[]>("live", live));
        var returned = await ReadReturnedAsync(command, cancellationToken).ConfigureAwait(false);
        if (returned > 0)
        {
            PostgreSqlLog.Reconciled(_logger, returned);
        }
    }

    /// <summary>Reads (topic, count) rows of messages returned to the front, wakes those topics; the total.</summary>
    private async Task<int> ReadReturnedAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var returned = 0;
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            returned += reader.GetInt32(1);
            Signals.Signal(reader.GetString(0));
        }

        return returned;
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

    /// <summary>
    /// With <see cref="MiniQueueOptions.MaxTopics"/>: of <paramref name="topics"/>, those that do not exist and would take
    /// the database past the maximum (the first ones that fit are let through). Topics found to exist are remembered,
    /// so that publishes to them are not checked again.
    /// </summary>
    private async Task<HashSet<string>> RefuseNewTopicsAsync(string[] topics)
    {
        await using var command = _database.CreateCommand(
            "SELECT (SELECT count(*) FROM miniqueue_topics)::integer, ARRAY(SELECT name FROM miniqueue_topics WHERE name = ANY(@names))");
        command.Parameters.Add(new NpgsqlParameter<string[]>("names", topics));
        await using var reader = await command.ExecuteReaderAsync().ConfigureAwait(false);
        await reader.ReadAsync().ConfigureAwait(false);
        var room = _maxTopics!.Value - reader.GetInt32(0);
        foreach (var existing in reader.GetFieldValue<string[]>(1))
        {
            _knownTopics[existing] = 0;
        }

        var refused = new HashSet<string>(StringComparer.Ordinal);
        foreach (var topic in topics.Where(topic => !_knownTopics.ContainsKey(topic)))
        {
            if (room-- <= 0)
            {
                refused.Add(topic);
            }
        }

        return refused;
    }

    private MiniQueueTopicLimitException TopicLimit(string topic) =>
        new($"The topic '{topic}' cannot be created: the database has {_maxTopics} topics, the maximum (MaxTopics).");

    /// <summary>A publish with an idempotency key (not batched): false when the key repeats one within its window.</summary>
    private async Task<bool> PublishKeyedAsync(string topic, byte[] body, double delay, byte[] key, CancellationToken cancellationToken)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        bool published;
        if (_maxTopics is not null && !_knownTopics.ContainsKey(topic))
        {
            try
            {
                if ((await RefuseNewTopicsAsync([topic]).ConfigureAwait(false)).Count > 0)
                {
                    throw TopicLimit(topic);
                }
            }
            catch (Exception exception) when (exception is NpgsqlException or TimeoutException)
            {
                throw Unreachable(exception, "The message was not published: the database did not take it");
            }
        }

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
            _metrics.Published(topic, started);
            Signals.Signal(topic);
        }
        else
        {
            _metrics.Duplicate(topic);
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
        ConsumersChanged();
        return consumer;
    }

    /// <summary>How many topics have a taker in this process (those with consumers), for tests.</summary>
    internal int Takers => _takers.Count;

    /// <summary>The taker of a topic's messages for this process's consumers.</summary>
    internal TopicTaker TakerOf(string topic) => _takers.GetOrAdd(topic, static (name, backend) => new TopicTaker(backend, name), this);

    /// <summary>Called where a taker's take reaches a <see cref="TakeStage"/>, which waits for the task it returns (for tests).</summary>
    internal Func<TakeStage, Task>? TakePause { get; set; }

    /// <summary>A taker begins a take for the receives waiting in <paramref name="topic"/>; <see cref="EndTake"/> ends it.</summary>
    internal TaskCompletionSource BeginTake(string topic)
    {
        var take = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _takesUnderWay[take] = topic;
        return take;
    }

    /// <summary>A take ended: what it took is handed out, and what it could not hand out is given back.</summary>
    internal void EndTake(TaskCompletionSource take)
    {
        _takesUnderWay.TryRemove(take, out _);
        take.SetResult();
    }

    /// <summary>
    /// Waits for this process's takes of <paramref name="topic"/> under way. A take begun for a receive that is cancelled
    /// meanwhile may still take a message published after the cancel, and holds it until it gives it back: a purge (or a
    /// redrive) that ran just then would pass over a message that nobody is receiving.
    /// </summary>
    private Task TakesEndedAsync(string topic, CancellationToken cancellationToken)
    {
        List<Task>? takes = null;
        foreach (var (take, name) in _takesUnderWay)
        {
            if (name == topic)
            {
                (takes ??= []).Add(take.Task);
            }
        }

        return takes is null ? Task.CompletedTask : Task.WhenAll(takes).WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Returns a held message to the front of its topic, as NACK does (a lease that passed, a consumer disposed while
    /// holding). Best effort: see <see cref="ReleaseAsync"/>.
    /// </summary>
    internal Task ReturnAsync(string topic, long id, Guid hold) => ReleaseAsync(SettleKind.Nack, topic, id, hold);

    /// <summary>
    /// Undoes a take whose message reached no consumer (its receive went meanwhile): the message is where it was in its
    /// topic's order, and the take does not count as a delivery. Best effort, like <see cref="ReturnAsync"/>.
    /// </summary>
    internal Task UntakeAsync(string topic, long id, Guid hold) => ReleaseAsync(SettleKind.Untake, topic, id, hold);

    /// <summary>
    /// Ends a hold (<see cref="SettleKind.Nack"/> or <see cref="SettleKind.Untake"/>); the settle wakes the topic's taker.
    /// If the database is away, the message stays held in it by this process until <see cref="ReconcileAsync"/> returns
    /// it once the database is back (or another process does, should this one die first).
    /// </summary>
    private async Task ReleaseAsync(SettleKind kind, string topic, long id, Guid hold)
    {
        try
        {
            await Settles.SettleAsync(kind, topic, id, hold).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is NpgsqlException or TimeoutException or ObjectDisposedException)
        {
            _ = Unreachable(exception, "release");
        }
        finally
        {
            Released(id);
        }
    }

    /// <summary>A consumer ended.</summary>
    internal void Remove(PostgreSqlConsumer consumer)
    {
        if (_consumers.TryRemove(consumer, out _))
        {
            _consumerCounts.AddOrUpdate(consumer.Topic, 0, static (_, count) => count - 1);
            if (_consumerCounts.TryRemove(new KeyValuePair<string, int>(consumer.Topic, 0)))
            {
                // The topic's last consumer in this process: its taker goes too (the next consumer makes a new one; a
                // consumer subscribing at this moment may keep using the old one, which still takes correctly).
                _takers.TryRemove(consumer.Topic, out _);
            }
            ConsumersChanged();
        }
    }

    public async ValueTask<int> PurgeAsync(string topic, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        ThrowIfDisposed();
        TopicName.ThrowIfInvalid(topic, nameof(topic));
        await TakesEndedAsync(topic, cancellationToken).ConfigureAwait(false);
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

        await TakesEndedAsync(deadLetter, cancellationToken).ConfigureAwait(false);
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
            _metrics.Redriven(topic, moved);
            PostgreSqlLog.Redriven(_logger, moved, deadLetter, topic);
            Signals.Signal(topic);
        }

        return moved;
    }

    /// <summary>
    /// A topic's ready, held and delayed messages (<c>m</c>, counted at <c>clock.n</c>) and the consumers of the other
    /// processes (of the topic <paramref name="topic"/> names), read by <see cref="ReadStats"/>.
    /// </summary>
    private static string Counts(string topic) => $"""
        count(m.id) FILTER (WHERE m.hold IS NULL AND (m.cls <> 1 OR m.due <= clock.n))::integer,
        count(m.id) FILTER (WHERE m.hold IS NOT NULL)::integer,
        count(m.id) FILTER (WHERE m.hold IS NULL AND m.cls = 1 AND m.due > clock.n)::integer,
        (SELECT COALESCE(sum(c.count), 0) FROM miniqueue_consumers AS c WHERE c.topic = {topic} AND c.process <> @process)::integer
        """;

    private static readonly string s_statsSql = $"""
        SELECT {Counts("@topic")}
        FROM miniqueue_messages AS m, (SELECT COALESCE(@now, now()) AS n) AS clock
        WHERE m.topic = @topic
        """;

    /// <summary>A topic's counts from the four columns of <see cref="Counts"/> at <paramref name="column"/>, with this process's consumers.</summary>
    private TopicStats ReadStats(NpgsqlDataReader reader, int column, string topic) => new(
        reader.GetInt32(column), reader.GetInt32(column + 1), reader.GetInt32(column + 2),
        _consumerCounts.GetValueOrDefault(topic) + reader.GetInt32(column + 3));

    /// <summary>
    /// The topic's counts now: ready, held and delayed from the database; consumers of this process, and of the others as
    /// they last wrote them (<see cref="WriteConsumersAsync"/>).
    /// </summary>
    public TopicStats GetStats(string topic)
    {
        TopicName.ThrowIfInvalid(topic, nameof(topic));
        ThrowIfDisposed();

        // The counts follow every ACK made before: those still waiting for a statement go in this one.
        var (acks, flight) = DrainAcks();
        flight.GetAwaiter().GetResult();
        try
        {
            // One transaction: the ACKs, then the counts (the first row the batch returns: the DELETE returns none).
            using var batch = _relaxed.CreateBatch();
            if (acks is not null)
            {
                batch.BatchCommands.Add(AckCommand(acks));
            }

            var stats = new NpgsqlBatchCommand(s_statsSql);
            stats.Parameters.Add(new NpgsqlParameter<string>("topic", topic));
            stats.Parameters.Add(new NpgsqlParameter<Guid>("process", ProcessId));
            stats.Parameters.Add(Now());
            batch.BatchCommands.Add(stats);
            using var reader = batch.ExecuteReader();
            while (!reader.Read() && reader.NextResult())
            {
            }

            var counts = ReadStats(reader, 0, topic);
            Reached();
            if (acks is not null)
            {
                Acked(acks);
            }

            return counts;
        }
        catch (Exception exception)
        {
            if (acks is not null)
            {
                RequeueAcks(acks);
            }

            throw Unreachable(exception, $"The counts of topic '{topic}' could not be read");
        }
    }

    private static readonly string s_allStatsSql = $"""
        SELECT t.name, {Counts("t.name")}
        FROM miniqueue_topics AS t
        CROSS JOIN (SELECT COALESCE(@now, now()) AS n) AS clock
        LEFT JOIN miniqueue_messages AS m ON m.topic = t.name
        GROUP BY t.name
        """;

    /// <summary>
    /// Every topic's counts, for the metrics (one statement that reads the whole table, at each collection); none while
    /// the database is away.
    /// </summary>
    private List<(string Topic, TopicStats Stats)> GetTopicsWithStats()
    {
        if (IsDisposed)
        {
            return [];
        }

        try
        {
            using var command = _relaxed.CreateCommand(s_allStatsSql);
            command.Parameters.Add(new NpgsqlParameter<Guid>("process", ProcessId));
            command.Parameters.Add(Now());
            using var reader = command.ExecuteReader();
            var all = new List<(string Topic, TopicStats Stats)>();
            while (reader.Read())
            {
                var topic = reader.GetString(0);
                all.Add((topic, ReadStats(reader, 1, topic)));
            }

            return all;
        }
        catch (Exception exception) when (exception is NpgsqlException or TimeoutException or ObjectDisposedException)
        {
            _ = Unreachable(exception, "metrics");
            return [];
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

    private void ConsumersChanged() => _consumersChanged.Writer.TryWrite(true);

    private const string ConsumersSql = """
        WITH gone AS (DELETE FROM miniqueue_consumers WHERE process = @process AND topic <> ALL(@topics))
        INSERT INTO miniqueue_consumers (process, topic, count)
        SELECT @process, topic, count FROM unnest(@topics, @counts) AS c(topic, count)
        ON CONFLICT (process, topic) DO UPDATE SET count = EXCLUDED.count
        """;

    /// <summary>
    /// Writes this process's consumers per topic for the other processes' stats: after each change (a subscribe, a
    /// consumer that ends) and after each heartbeat (which may have had to put this process's row back). Ends when the
    /// backend stops.
    /// </summary>
    private async Task WriteConsumersAsync()
    {
        while (true)
        {
            try
            {
                await _consumersChanged.Reader.ReadAsync(_stopping.Token).ConfigureAwait(false);
                var counts = _consumerCounts.ToArray();
                await using var command = _relaxed.CreateCommand(ConsumersSql);
                command.Parameters.Add(new NpgsqlParameter<Guid>("process", ProcessId));
                command.Parameters.Add(new NpgsqlParameter<string[]>("topics", [.. counts.Select(static pair => pair.Key)]));
                command.Parameters.Add(new NpgsqlParameter<int[]>("counts", [.. counts.Select(static pair => pair.Value)]));
                await command.ExecuteNonQueryAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception exception) when (exception is NpgsqlException or TimeoutException)
            {
                // The database is away, or this process's row is (it was taken for dead): the next heartbeat, which puts
                // the row back, writes them again.
            }
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
                ConsumersChanged();
                if (Interlocked.Exchange(ref _reconcile, 0) == 1)
                {
                    await ReconcileAsync(_stopping.Token).ConfigureAwait(false);
                }
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

    private const string BeatSql = $"""
        INSERT INTO miniqueue_processes (id, beat) VALUES (@process, now()) ON CONFLICT (id) DO UPDATE SET beat = now();
        WITH returned AS (
            UPDATE miniqueue_messages SET {ToFront}
            WHERE lease_until < COALESCE(@now, now()) - make_interval(secs => @lease)
            RETURNING topic)
        {ReturnedByTopic};
        DELETE FROM miniqueue_keys WHERE expires < COALESCE(@now, now()) - interval '1 hour';
        """;

    private const string DeadSql = $"""
        WITH dead AS (DELETE FROM miniqueue_processes WHERE beat < now() - make_interval(secs => @lease) RETURNING id),
        returned AS (
            UPDATE miniqueue_messages SET {ToFront}
            WHERE holder IN (SELECT id FROM dead)
            RETURNING topic)
        {ReturnedByTopic}
        """;

    /// <summary>
    /// The heartbeat: this process is alive; messages whose own lease is overdue by a process lease (their holder could
    /// not return them) return to the front; long-expired idempotency keys go. When a process has stopped beating for
    /// <see cref="ProcessLease"/>, the messages it held return to the front in the same transaction as its row goes
    /// (a scan of the table, which runs only then: no index on the holder keeps takes cheap).
    /// </summary>
    private async Task BeatAsync(CancellationToken cancellationToken)
    {
        var returned = 0;
        await using (var command = _relaxed.CreateCommand(BeatSql))
        {
            command.Parameters.Add(new NpgsqlParameter<Guid>("process", ProcessId));
            command.Parameters.Add(new NpgsqlParameter<double>("lease", ProcessLease.TotalSeconds));
            command.Parameters.Add(Now());
            returned += await ReadReturnedAsync(command, cancellationToken).ConfigureAwait(false);
        }

        bool anyDead;
        await using (var command = _relaxed.CreateCommand("SELECT EXISTS (SELECT 1 FROM miniqueue_processes WHERE beat < now() - make_interval(secs => @lease))"))
        {
            command.Parameters.Add(new NpgsqlParameter<double>("lease", ProcessLease.TotalSeconds));
            anyDead = (bool)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        if (anyDead)
        {
            await using var command = _relaxed.CreateCommand(DeadSql);
            command.Parameters.Add(new NpgsqlParameter<double>("lease", ProcessLease.TotalSeconds));
            returned += await ReadReturnedAsync(command, cancellationToken).ConfigureAwait(false);
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

        // Consumers that hold nothing end first: a message a holder returns must not go to a waiter about to end too.
        foreach (var consumer in _consumers.Keys.OrderBy(static consumer => consumer.IsHoldingMessage))
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
        await _relaxed.DisposeAsync().ConfigureAwait(false);
        _metrics.Dispose();
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
        await _relaxed.DisposeAsync().ConfigureAwait(false);
        _metrics.Dispose();
    }

    /// <summary>
    /// Stops the background work: the batch writers (after what they were given), the ACK flusher (after a last try), the
    /// heartbeat, the listener.
    /// </summary>
    private async Task StopWorkAsync()
    {
        _publishes.Writer.TryComplete();
        Settles.Complete();
        await _stopping.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_writers).ConfigureAwait(false);
        await _heartbeat.ConfigureAwait(false);
        await Signals.DisposeAsync().ConfigureAwait(false);
    }

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(IsDisposed, typeof(MiniQueueEngine));

    internal bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>An ACK waiting for a statement: the message and its hold.</summary>
    internal readonly record struct PendingAck(long Id, Guid Hold);

    /// <summary>A publish waiting for its batch.</summary>
    private sealed class PendingPublish(string topic, byte[] body, double delaySeconds)
    {
        public string Topic { get; } = topic;

        public byte[] Body { get; } = body;

        public double DelaySeconds { get; } = delaySeconds;

        /// <summary>When it was made (for the publish duration histogram).</summary>
        public long Started { get; } = System.Diagnostics.Stopwatch.GetTimestamp();

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
