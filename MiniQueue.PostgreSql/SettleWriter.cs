using System.Threading.Channels;
using MiniQueue.Engine;
using Npgsql;

namespace MiniQueue.PostgreSql;

/// <summary>What a settle does to a held message (its value is the one the statement reads).</summary>
internal enum SettleKind : short
{
    /// <summary>Back to the front of its topic (a NACK, a lease that passed, a consumer that ended while holding it).</summary>
    Nack = 0,

    /// <summary>To the back of its topic.</summary>
    Back = 1,

    /// <summary>Delayed by some seconds, its DACK count one more.</summary>
    Dack = 2,

    /// <summary>Still held; its lease starts again.</summary>
    Touch = 3,

    /// <summary>A take undone: back in its place, the take not counted as a delivery.</summary>
    Untake = 4,
}

/// <summary>
/// Settles other than ACK (which rides on takes: <see cref="PostgreSqlBackend.Ack"/>): the settles of a process that wait
/// at the same time share one UPDATE and one commit, as its publishes share one INSERT. Each names its message by its
/// hold, so a settle whose hold had ended (a lease that passed, a process taken for dead) changes nothing and says so.
/// </summary>
internal sealed class SettleWriter(PostgreSqlBackend backend)
{
    /// <summary>How many batches of settles may be in flight at once (each on its own connection).</summary>
    private const int Writers = 2;

    private const string SettleSql = """
        WITH settled AS (
            UPDATE miniqueue_messages AS m SET
                cls = CASE s.kind WHEN 0 THEN 0 WHEN 1 THEN 2 WHEN 2 THEN 1 ELSE m.cls END,
                due = CASE s.kind WHEN 2 THEN COALESCE(@now, now()) + make_interval(secs => s.secs) WHEN 0 THEN NULL WHEN 1 THEN NULL ELSE m.due END,
                seq = CASE s.kind WHEN 0 THEN -nextval('miniqueue_seq') WHEN 1 THEN nextval('miniqueue_seq') WHEN 2 THEN nextval('miniqueue_seq') ELSE m.seq END,
                dack_count = m.dack_count + CASE s.kind WHEN 2 THEN 1 ELSE 0 END,
                deliveries = m.deliveries - CASE s.kind WHEN 4 THEN 1 ELSE 0 END,
                holder = CASE s.kind WHEN 3 THEN m.holder END,
                hold = CASE s.kind WHEN 3 THEN m.hold END,
                lease_until = CASE s.kind WHEN 3 THEN COALESCE(@now, now()) + make_interval(secs => s.secs) END
            FROM unnest(@ids, @holds, @kinds, @secs) AS s(id, hold, kind, secs)
            WHERE m.id = s.id AND m.hold = s.hold
            RETURNING m.id, s.kind, m.topic)
        SELECT id, kind, CASE WHEN kind <> 3 THEN pg_notify('miniqueue', topic) END FROM settled
        """;

    private readonly Channel<PendingSettle> _pending = Channel.CreateUnbounded<PendingSettle>(new UnboundedChannelOptions { SingleReader = false });
    private long _statements;

    /// <summary>How many statements have carried settles (each one round trip and one commit), for tests.</summary>
    internal long Statements => Interlocked.Read(ref _statements);

    /// <summary>Starts the writers; they end once <see cref="Complete"/> was called and what waits is written.</summary>
    public Task[] Start() =>
    [
        .. Enumerable.Range(0, Writers).Select(_ => Task.Run(
            () => PostgreSqlBackend.RunBatchesAsync(_pending.Reader, WriteAsync, Fail), CancellationToken.None)),
    ];

    /// <summary>No more settles: the writers end after those waiting.</summary>
    public void Complete() => _pending.Writer.TryComplete();

    /// <summary>
    /// Settles the message <paramref name="id"/> held under <paramref name="hold"/>: true once committed, false when the
    /// hold had ended; fails when the database did not take it (the message is then still held, in the database).
    /// <paramref name="seconds"/> is a DACK's delay or a TOUCH's lease.
    /// </summary>
    public Task<bool> SettleAsync(SettleKind kind, string topic, long id, Guid hold, double seconds = 0)
    {
        var settle = new PendingSettle(kind, topic, id, hold, seconds);
        ObjectDisposedException.ThrowIf(!_pending.Writer.TryWrite(settle), typeof(MiniQueueEngine));
        return settle.Done.Task;
    }

    private async Task WriteAsync(List<PendingSettle> batch)
    {
        var settled = new HashSet<(long Id, SettleKind Kind)>();
        Interlocked.Increment(ref _statements);
        await using (var command = backend.Relaxed.CreateCommand(SettleSql))
        {
            command.Parameters.Add(new NpgsqlParameter<long[]>("ids", [.. batch.Select(static settle => settle.Id)]));
            command.Parameters.Add(new NpgsqlParameter<Guid[]>("holds", [.. batch.Select(static settle => settle.Hold)]));
            command.Parameters.Add(new NpgsqlParameter<short[]>("kinds", [.. batch.Select(static settle => (short)settle.Kind)]));
            command.Parameters.Add(new NpgsqlParameter<double[]>("secs", [.. batch.Select(static settle => Math.Max(0, settle.Seconds))]));
            command.Parameters.Add(backend.Now());
            await using var reader = await command.ExecuteReaderAsync().ConfigureAwait(false);
            while (await reader.ReadAsync().ConfigureAwait(false))
            {
                settled.Add((reader.GetInt64(0), (SettleKind)reader.GetInt16(1)));
            }
        }

        backend.Reached();
        var moved = new HashSet<string>(StringComparer.Ordinal);
        foreach (var settle in batch)
        {
            // A message settled twice in one batch (its consumer's NACK and its lease's return) changes once.
            var done = settled.Remove((settle.Id, settle.Kind));
            if (done && settle.Kind != SettleKind.Touch)
            {
                moved.Add(settle.Topic);
            }

            settle.Done.TrySetResult(done);
        }

        foreach (var topic in moved)
        {
            backend.Signals.Signal(topic);
        }
    }

    private static void Fail(List<PendingSettle> batch, Exception exception)
    {
        foreach (var settle in batch)
        {
            settle.Done.TrySetException(exception);
        }
    }

    /// <summary>A settle waiting for its batch.</summary>
    private sealed class PendingSettle(SettleKind kind, string topic, long id, Guid hold, double seconds)
    {
        public SettleKind Kind { get; } = kind;

        public string Topic { get; } = topic;

        public long Id { get; } = id;

        public Guid Hold { get; } = hold;

        public double Seconds { get; } = seconds;

        public TaskCompletionSource<bool> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
