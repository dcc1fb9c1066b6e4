using MiniQueue.Engine;
using Npgsql;

namespace MiniQueue.PostgreSql;

/// <summary>
/// Takes messages of one topic for this process's waiting consumers: one statement takes the next messages for all of
/// them at once (<c>LIMIT</c> the number waiting, <c>FOR UPDATE SKIP LOCKED</c>) and hands them out longest waiting
/// first, in delivery order. When the topic has fewer messages than waiting consumers, it waits for a signal
/// (<see cref="TopicSignals"/>) or for the next delayed message's due time. One taker per topic and process.
/// </summary>
/// <remarks>
/// A take also carries the process's waiting ACKs (<see cref="PostgreSqlBackend.DrainAcks"/>) in its transaction, and
/// hands its messages only to receives that began before it did: so a consumer that ACKs and receives again gets its
/// next message only once its ACK is committed.
/// </remarks>
internal sealed class TopicTaker
{
    /// <summary>The most messages one statement takes.</summary>
    private const int MaxBatch = 64;

    /// <summary>How many messages beyond those it takes a take looks at for spent ones to move to the dead-letter topic.</summary>
    private const int SpentWindow = 64;

    private readonly PostgreSqlBackend _backend;
    private readonly TopicPolicy _policy;
    private readonly Lock _lock = new();
    private readonly LinkedList<Receiver> _waiting = new();
    private CancellationTokenSource? _idle;
    private bool _running;
    private long _tickets;

    public TopicTaker(PostgreSqlBackend backend, string topic)
    {
        _backend = backend;
        Topic = topic;
        _policy = backend.PolicyOf(topic);
    }

    public string Topic { get; }

    /// <summary>Waits for the next message for <paramref name="consumer"/>, which then holds it.</summary>
    public async Task<Delivery> ReceiveAsync(PostgreSqlConsumer consumer, CancellationToken cancellationToken)
    {
        var receiver = new Receiver(consumer, this);
        LinkedListNode<Receiver> node;
        var start = false;
        lock (_lock)
        {
            receiver.Ticket = ++_tickets;
            node = _waiting.AddLast(receiver);
            if (!_running)
            {
                _running = true;
                start = true;
            }
        }

        if (start)
        {
            _ = Task.Run(RunAsync, CancellationToken.None);
        }

        // A cancelled wait leaves the line at once, so that no message is taken for it.
        receiver.Node = node;
        using (cancellationToken.UnsafeRegister(static (state, token) => ((Receiver)state!).Leave(token), receiver))
        {
            return await receiver.Done.Task.ConfigureAwait(false);
        }
    }

    /// <summary>A waiting receive was cancelled: it leaves the line; the taker stops waiting when nobody is left.</summary>
    private void Leave(LinkedListNode<Receiver> node, CancellationToken token)
    {
        CancellationTokenSource? idle = null;
        lock (_lock)
        {
            if (node.List is not null)
            {
                _waiting.Remove(node);
                if (_waiting.Count == 0)
                {
                    idle = _idle;
                }
            }
        }

        node.Value.Done.TrySetCanceled(token);
        idle?.Cancel();
    }

    private async Task RunAsync()
    {
        var retry = PostgreSqlBackend.FirstRetry;
        while (true)
        {
            int wanted;
            long cutoff;
            TaskCompletionSource underWay;
            lock (_lock)
            {
                wanted = Math.Min(_waiting.Count, MaxBatch);
                cutoff = _tickets;
                if (wanted == 0 || _backend.IsDisposed)
                {
                    _running = false;
                    return;
                }

                underWay = _backend.BeginTake(Topic);
            }

            DueTime? nextDue;
            int handed;
            try
            {
                (handed, nextDue, _) = await TakeAsync(wanted, cutoff).ConfigureAwait(false);
                retry = PostgreSqlBackend.FirstRetry;
            }
            catch (MiniQueueStoreException)
            {
                // The database is away: the waiting consumers wait on; the taker looks again, less and less often.
                nextDue = new DueTime(retry, null);
                handed = 0;
                retry = PostgreSqlBackend.NextRetry(retry);
            }
            finally
            {
                _backend.EndTake(underWay);
            }

            if (handed >= wanted)
            {
                continue;
            }

            // Not disposed: a receive that leaves may cancel it at any moment (it has no timer to free).
            var idle = new CancellationTokenSource();
            lock (_lock)
            {
                if (_waiting.Count == 0)
                {
                    continue;
                }

                _idle = idle;
            }

            try
            {
                await _backend.Signals.WaitAsync(Topic, nextDue, _backend.Time, idle.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            finally
            {
                lock (_lock)
                {
                    _idle = null;
                }
            }
        }
    }

    /// <summary>
    /// The first <paramref name="limit"/> messages of the topic that can be delivered, in delivery order: the NACKed,
    /// then the delayed ones that are due, then the FIFO ones, each an index range (so delayed messages not yet due are
    /// never read), read in that order until there are enough. A row is locked (<c>FOR UPDATE SKIP LOCKED</c>) only when
    /// read, so exactly those returned are.
    /// </summary>
    private static string Head(string columns, string limit, string filter) => $"""
        SELECT {columns} FROM (
            SELECT {columns} FROM (
                SELECT {columns} FROM miniqueue_messages WHERE topic = @topic AND cls = 0 AND hold IS NULL{filter}
                ORDER BY due, seq LIMIT {limit} FOR UPDATE SKIP LOCKED) AS nacked
            UNION ALL
            SELECT {columns} FROM (
                SELECT {columns} FROM miniqueue_messages WHERE topic = @topic AND cls = 1 AND due <= COALESCE(@now, now()) AND hold IS NULL{filter}
                ORDER BY due, seq LIMIT {limit} FOR UPDATE SKIP LOCKED) AS due
            UNION ALL
            SELECT {columns} FROM (
                SELECT {columns} FROM miniqueue_messages WHERE topic = @topic AND cls = 2 AND hold IS NULL{filter}
                ORDER BY due, seq LIMIT {limit} FOR UPDATE SKIP LOCKED) AS fifo) AS candidates
        LIMIT {limit}
        """;

    /// <summary>
    /// Moves the messages that had their last allowed delivery among the first <c>@window</c> of the topic (what the take
    /// asks for and <see cref="SpentWindow"/> more) to the dead-letter topic. Only the head is read, so a take costs the
    /// same in a long topic; the take after it skips spent messages beyond the window, which the next take moves.
    /// </summary>
    private static readonly string s_moveSpentSql = $"""
        WITH head AS ({Head("id, deliveries", "@window", "")}),
        moved AS (
            UPDATE miniqueue_messages AS m
            SET topic = @dead, cls = 2, due = NULL, seq = nextval('miniqueue_seq'), dack_count = 0, deliveries = 0
            FROM head WHERE m.id = head.id AND head.deliveries >= @max
            RETURNING 1),
        topics AS (INSERT INTO miniqueue_topics (name) SELECT @dead WHERE EXISTS (SELECT 1 FROM moved) ON CONFLICT DO NOTHING)
        SELECT (SELECT count(*) FROM moved)::integer, (SELECT pg_notify('miniqueue', @dead) WHERE EXISTS (SELECT 1 FROM moved))
        """;

    /// <summary>Takes the next <c>@count</c> messages (none that had their last allowed delivery: <c>@max</c>).</summary>
    private static readonly string s_takeSql = $"""
        WITH next AS ({Head("id", "@count", " AND deliveries < @max")})
        UPDATE miniqueue_messages AS m
        SET holder = @process, hold = @hold, deliveries = m.deliveries + 1,
            lease_until = CASE WHEN @lease > 0 THEN COALESCE(@now, now()) + make_interval(secs => @lease) END
        FROM next WHERE m.id = next.id
        RETURNING m.id, m.body, m.dack_count, m.cls, m.due, m.seq
        """;

    private const string NextDueSql = """
        SELECT EXTRACT(EPOCH FROM min(due) - COALESCE(@now, now()))::double precision, min(due)
        FROM miniqueue_messages WHERE topic = @topic AND hold IS NULL AND cls = 1
        """;

    /// <summary>
    /// For <see cref="PostgreSqlConsumer.TryReceive"/>: takes the next message for <paramref name="consumer"/> alone, at
    /// once (one round trip, made synchronously), if one is ready; null if none is, or if the database is away.
    /// </summary>
    public Delivery? TryTake(PostgreSqlConsumer consumer)
    {
        try
        {
            // Every call to the database in it is synchronous: the task is done (or, should a disposal still have had
            // I/O to finish, waited for on this thread).
            return TakeAsync(1, 0, consumer, sync: true).GetAwaiter().GetResult().Direct;
        }
        catch (MiniQueueStoreException)
        {
            return null;
        }
    }

    /// <summary>
    /// One round trip: moves spent messages to the dead-letter topic, takes up to <paramref name="count"/> messages, commits
    /// the waiting ACKs, and hands the messages out to receives with a ticket up to <paramref name="cutoff"/> (or the
    /// one message to <paramref name="direct"/>); when it took fewer than asked, says when the next delayed message comes
    /// due (a second round trip, only then). With <paramref name="sync"/>, every call to the database is synchronous and
    /// the returned task is complete.
    /// </summary>
    private async Task<(int Handed, DueTime? NextDue, Delivery? Direct)> TakeAsync(int count, long cutoff, PostgreSqlConsumer? direct = null, bool sync = false)
    {
        var asked = count;
        var taken = new List<Taken>(count);
        var moved = 0;
        var hold = _backend.StartTake();
        var (acks, flight) = _backend.DrainAcks();
        try
        {
            if (sync)
            {
                flight.GetAwaiter().GetResult();
            }
            else
            {
                await flight.ConfigureAwait(false);
            }

            await using var connection = sync ? _backend.Relaxed.OpenConnection() : await _backend.Relaxed.OpenConnectionAsync().ConfigureAwait(false);
            if (direct is null)
            {
                if (_backend.TakePause is { } pause)
                {
                    await pause(TakeStage.Connected).ConfigureAwait(false);
                }

                // Receives may have left while the ACKs and the connection were awaited: take only for those still waiting.
                count = StillWaiting(count, cutoff);
            }

            await using var batch = new NpgsqlBatch(connection);
            var moves = _policy.MaxDeliveries > 0;
            if (moves)
            {
                var move = new NpgsqlBatchCommand(s_moveSpentSql);
                move.Parameters.Add(new NpgsqlParameter<string>("topic", Topic));
                move.Parameters.Add(new NpgsqlParameter<string>("dead", _policy.DeadLetterTopic!));
                move.Parameters.Add(new NpgsqlParameter<int>("max", _policy.MaxDeliveries));
                move.Parameters.Add(new NpgsqlParameter<int>("window", count + SpentWindow));
                move.Parameters.Add(_backend.Now());
                batch.BatchCommands.Add(move);
            }

            var take = new NpgsqlBatchCommand(s_takeSql);
            take.Parameters.Add(new NpgsqlParameter<string>("topic", Topic));
            take.Parameters.Add(new NpgsqlParameter<int>("count", count));
            take.Parameters.Add(new NpgsqlParameter<int>("max", moves ? _policy.MaxDeliveries : int.MaxValue));
            take.Parameters.Add(new NpgsqlParameter<Guid>("process", _backend.ProcessId));
            take.Parameters.Add(new NpgsqlParameter<Guid>("hold", hold));
            take.Parameters.Add(new NpgsqlParameter<double>("lease", TimeSpan.FromTicks(_policy.LeaseTicks).TotalSeconds));
            take.Parameters.Add(_backend.Now());
            batch.BatchCommands.Add(take);
            if (acks is not null)
            {
                // Last: it returns no rows, and the batch is one transaction.
                batch.BatchCommands.Add(PostgreSqlBackend.AckCommand(acks));
            }

            await using (var reader = sync ? batch.ExecuteReader() : await batch.ExecuteReaderAsync().ConfigureAwait(false))
            {
                if (moves)
                {
                    _ = sync ? reader.Read() : await reader.ReadAsync().ConfigureAwait(false);
                    moved = reader.GetInt32(0);
                    if (moved > 0)
                    {
                        _backend.Metrics.DeadLettered(Topic, moved);
                        PostgreSqlLog.DeadLettered(_backend.Logger, Topic, moved, _policy.DeadLetterTopic!);
                        _backend.Signals.Signal(_policy.DeadLetterTopic!);
                    }

                    _ = sync ? reader.NextResult() : await reader.NextResultAsync().ConfigureAwait(false);
                }

                while (sync ? reader.Read() : await reader.ReadAsync().ConfigureAwait(false))
                {
                    taken.Add(new Taken(
                        reader.GetInt64(0), reader.GetFieldValue<byte[]>(1), reader.GetInt32(2), hold,
                        reader.GetInt16(3), reader.IsDBNull(4) ? DateTime.MinValue : reader.GetDateTime(4), reader.GetInt64(5)));
                }

                while (sync ? reader.NextResult() : await reader.NextResultAsync().ConfigureAwait(false))
                {
                }
            }

            _backend.Reached();
        }
        catch (Exception exception)
        {
            // Nothing was taken or ACKed (one transaction), or, if it failed after the commit, the messages it took are
            // this process's in the database until the reconcile after the failure returns them.
            _backend.Taken(hold, []);
            if (acks is not null)
            {
                _backend.RequeueAcks(acks);
            }

            throw _backend.Unreachable(exception, $"No message of topic '{Topic}' could be taken");
        }

        _backend.Taken(hold, taken.Select(static message => message.Id));
        if (acks is not null)
        {
            _backend.Acked(acks);
        }

        if (direct is not null)
        {
            if (taken.Count == 0)
            {
                return (0, null, null);
            }

            var message = taken[0];
            if (direct.TryHold(message.Id, message.Hold, message.Body, message.DackCount) is { } delivery)
            {
                _backend.Metrics.Delivered(Topic);
                return (1, null, delivery);
            }

            // The consumer was disposed meanwhile.
            _ = _backend.UntakeAsync(Topic, message.Id, message.Hold);
            return (0, null, null);
        }

        if (_backend.TakePause is { } paused)
        {
            await paused(TakeStage.Taken).ConfigureAwait(false);
        }

        // In delivery order, to the longest waiting first.
        taken.Sort(static (a, b) => (a.Class, a.Due, a.Seq).CompareTo((b.Class, b.Due, b.Seq)));
        var handed = 0;
        foreach (var message in taken)
        {
            if (!HandOut(message, cutoff))
            {
                // Its consumer went meanwhile: the take is undone (the message keeps its place and its delivery count).
                await _backend.UntakeAsync(Topic, message.Id, message.Hold).ConfigureAwait(false);
            }
            else
            {
                handed++;
            }
        }

        // Short: spent messages moved may have hidden more beyond the window (look again at once), or wait for a signal
        // or the next due time. Asked for fewer than the taker wanted (receives left meanwhile): look again at once, for
        // receives that began since.
        return (handed, handed >= count ? (count < asked ? new DueTime(TimeSpan.Zero, null) : null)
            : moved > 0 ? new DueTime(TimeSpan.Zero, null) : await NextDueAsync().ConfigureAwait(false), null);
    }

    /// <summary>How many of the first <paramref name="count"/> receives in line began before the take (<paramref name="cutoff"/>) and still wait.</summary>
    private int StillWaiting(int count, long cutoff)
    {
        lock (_lock)
        {
            var waiting = 0;
            for (var node = _waiting.First; node is not null && waiting < count && node.Value.Ticket <= cutoff; node = node.Next)
            {
                waiting++;
            }

            return waiting;
        }
    }

    /// <summary>When the topic's next delayed message comes due, if it has one (the taker then waits for it or a signal).</summary>
    private async Task<DueTime?> NextDueAsync()
    {
        try
        {
            await using var command = _backend.Relaxed.CreateCommand(NextDueSql);
            command.Parameters.Add(new NpgsqlParameter<string>("topic", Topic));
            command.Parameters.Add(_backend.Now());
            await using var reader = await command.ExecuteReaderAsync().ConfigureAwait(false);
            return await reader.ReadAsync().ConfigureAwait(false) && !reader.IsDBNull(0)
                ? _backend.UntilDue(reader.GetDouble(0), reader.GetFieldValue<DateTimeOffset>(1))
                : null;
        }
        catch (Exception exception)
        {
            throw _backend.Unreachable(exception, $"The next due time of topic '{Topic}' could not be read");
        }
    }

    /// <summary>
    /// Gives a taken message to the longest waiting consumer still waiting, if its receive began before the take
    /// (its ticket is at most <paramref name="cutoff"/>); false when none is.
    /// </summary>
    private bool HandOut(Taken message, long cutoff)
    {
        while (true)
        {
            Receiver receiver;
            lock (_lock)
            {
                if (_waiting.First is not { } first || first.Value.Ticket > cutoff)
                {
                    return false;
                }

                receiver = first.Value;
                _waiting.RemoveFirst();
            }

            if (receiver.Consumer.TryHold(message.Id, message.Hold, message.Body, message.DackCount) is { } delivery)
            {
                if (receiver.Done.TrySetResult(delivery))
                {
                    _backend.Metrics.Delivered(Topic);
                    return true;
                }

                // Its wait was cancelled just now: it lets go, and the message (still held by this process under the
                // same hold) goes to the next one waiting, or the take is undone.
                receiver.Consumer.Unhold(message.Hold);
            }
        }
    }

    private sealed class Receiver(PostgreSqlConsumer consumer, TopicTaker taker)
    {
        public PostgreSqlConsumer Consumer { get; } = consumer;

        /// <summary>The order in which receives began: a take hands out only to those that began before it.</summary>
        public long Ticket { get; set; }

        /// <summary>Its place in the line.</summary>
        public LinkedListNode<Receiver>? Node { get; set; }

        public void Leave(CancellationToken token) => taker.Leave(Node!, token);

        public TaskCompletionSource<Delivery> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private readonly record struct Taken(long Id, byte[] Body, int DackCount, Guid Hold, short Class, DateTime Due, long Seq);
}

/// <summary>Where a take stops for <see cref="PostgreSqlBackend.TakePause"/> (for tests).</summary>
internal enum TakeStage
{
    /// <summary>The ACKs before it are committed and its connection is open; it has not yet counted who still waits.</summary>
    Connected,

    /// <summary>Its statement is committed; it has not yet handed out what it took.</summary>
    Taken,
}
