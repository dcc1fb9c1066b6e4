using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using MiniQueue.Storage;

namespace MiniQueue.Engine;

/// <summary>
/// One topic: its messages in delivery order, its consumers and the consumers waiting for a message.
/// Every field here, and the state of this topic's consumers, is guarded by <see cref="SyncRoot"/>;
/// waiters are completed after the lock is released.
/// </summary>
/// <remarks>
/// Delivery order: NACKed messages (latest first), then delayed messages that have come due (earliest due first,
/// ties in DACK order), then the rest in FIFO order (BACK appends to its end).
/// A published message becomes visible only once its record is durable, and in publish order.
/// </remarks>
internal sealed partial class TopicQueue
{
    private const int CompactStaleWaitersAbove = 64;


    private readonly LocalBackend _engine;
    private readonly ILogStore _store;
    private readonly LogSpace _space;
    private readonly TimeProvider _time;
    private readonly TopicScheduler _scheduler;
    private readonly TopicPolicy _policy;


    /// <summary>How many times each message was delivered (by id), kept while the topic limits deliveries.</summary>
    private readonly Dictionary<long, int> _deliveries = [];

    /// <summary>
    /// Messages taken for their dead-letter topic, not moved yet: the move takes this topic's lock and the dead-letter
    /// topic's (in rank order), so it runs after the lock that took them is released (see <see cref="ShipOutgoingLocked"/>).
    /// Until then they are still this topic's, at the front.
    /// </summary>
    private readonly List<MessageEntry> _outgoing = [];
    private bool _moveScheduled;

    /// <summary>The body read ahead for <see cref="TryTakeAtHandLocked"/>: at most one per topic.</summary>
    private ReadAhead? _readAhead;

    private readonly Stack<MessageEntry> _front = new();
    private readonly Queue<MessageEntry> _due = new();
    private readonly PriorityQueue<MessageEntry, DueKey> _delayed = new();
    private readonly ChunkedQueue<MessageEntry> _ready = new();
    private readonly Queue<MessageEntry> _pending = new();

    /// <summary>The idempotency keys the topic remembers (see <see cref="IdempotencyKeys"/>).</summary>
    private readonly IdempotencyKeys _keys;

    /// <summary>The keys of pending publishes made with one (by message id): they count once their publish is durable.</summary>
    private readonly Dictionary<long, IdempotencyKeys.Key> _pendingKeys = [];

    /// <summary>The due times of pending publishes made with a delay (by message id): they become delayed, not ready.</summary>
    private readonly Dictionary<long, long> _pendingDue = [];

    /// <summary>
    /// Publishes whose record a reopened log lost before they were durable (a checkpoint dropped them): their publishers,
    /// still waiting, must hear that they failed, even though the reopened log commits other records at those addresses.
    /// </summary>
    private readonly HashSet<long> _lostPublishes = [];

    /// <summary>
    /// Where the bodies of messages larger than one log record start: the address of their first part (by message id).
    /// Their publish record, which <see cref="MessageEntry.Address"/> points to, comes after the parts; the log may be
    /// truncated only before the first.
    /// </summary>
    private readonly Dictionary<long, long> _firstPart = [];
    private readonly Func<LogRecord, long> _appendOrThrow;
    private Queue<(LocalConsumer Consumer, long Wait)> _waiters = new();
    private readonly HashSet<LocalConsumer> _consumers = [];
    private int _held;
    private int _staleWaiters;
    private long _lastVisibleId;
    private long _dackSequence;
    private bool _created;
    private bool _retired;
    private bool _closed;

    public TopicQueue(
        LocalBackend engine, ILogStore store, LogSpace space, string name, TimeProvider time, TimeSpan period, TopicPolicy policy, long rank)
    {
        Rank = rank;
        _keys = new IdempotencyKeys(policy.IdempotencyWindowTicks);
        _policy = policy;
        _engine = engine;
        _store = store;
        _space = space;
        _time = time;
        _scheduler = new TopicScheduler(time, period.Ticks, OnTimer);
        Name = name;
        NameUtf8 = TopicName.ToUtf8(name);
        _appendOrThrow = AppendOrThrow;
    }

    public Lock SyncRoot { get; } = new();

    public string Name { get; }

    /// <summary>The topic's policy (lease, max deliveries).</summary>
    public TopicPolicy Policy => _policy;

    /// <summary>The order in which topic locks are taken when an operation needs two (lower rank first).</summary>
    public long Rank { get; }

    /// <summary>Whether the topic was retired (the engine forgot it); read under the lock.</summary>
    public bool IsRetiredLocked => _retired;

    public byte[] NameUtf8 { get; }

    /// <summary>Whether a message was ever published to the topic (a topic is created by its first publish).</summary>
    public bool IsCreated
    {
        get
        {
            lock (SyncRoot)
            {
                return _created;
            }
        }
    }

    /// <summary>Appends a message; it is delivered once the store says it is durable. Returns false if the topic was retired.</summary>
    /// <remarks>The publish is counted in the metrics (with its duration from <paramref name="started"/>) once it is durable.</remarks>
    /// <remarks>
    /// With an idempotency key (<paramref name="keyed"/>) that the topic remembers, nothing is appended: the result is
    /// <see cref="PublishStep.Duplicate"/>, or <see cref="PublishStep.AwaitOriginal"/> while the first publish with the
    /// key is not durable yet (<paramref name="original"/> then says whether it became durable; if not, publish again).
    /// </remarks>
    public PublishStep TryPublish(
        ReadOnlyMemory<byte> payload, PublishOptions? options, KeyedPublish? keyed, long started, out ValueTask completion, out Task<bool>? original)
    {
        original = null;
        var delayTicks = options is { Delay: var delay } && delay > TimeSpan.Zero ? delay.Ticks : 0;
        // The body stays in memory when the store cannot read it back, or while the engine's body cache has room.
        var body = !_store.CanRead || _engine.TryReserveBodyCache(payload.Length) ? payload.ToArray() : null;
        LocalConsumer? toComplete = null;
        long id;
        long address;
        long firstPart;
        ValueTask durable;
        long due = 0;
        long keyAddress = -1;
        long now = 0;
        var newSegment = false;
        lock (SyncRoot)
        {
            try
            {
                if (_retired)
                {
                    completion = default;
                    ReleaseBodyCache(body);
                    return PublishStep.Retired;
                }

                ThrowIfClosedLocked();
                if (keyed is not null)
                {
                    now = _time.GetUtcNow().UtcTicks;
                    _keys.Expire(now);
                    if (_keys.Find(keyed.Key) is { } known)
                    {
                        completion = default;
                        ReleaseBodyCache(body);
                        if (known.IsDurable)
                        {
                            return PublishStep.Duplicate;
                        }

                        original = (known.Original ??= new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
                        return PublishStep.AwaitOriginal;
                    }
                }

                id = _engine.NextMessageId();
                if (keyed is not null)
                {
                    // Before the publish record, like a due time: a durable publish is durable with its key.
                    keyAddress = AppendOrThrow(LogRecord.IdempotencyKey(id, now, keyed.Utf8));
                }

                if (delayTicks > 0)
                {
                    // Before the publish record, so that a durable publish is always durable with its due time.
                    now = _time.GetUtcNow().UtcTicks;
                    due = now + Math.Min(delayTicks, DateTimeOffset.MaxValue.UtcTicks - now);
                    AppendOrThrow(LogRecord.Schedule(id, due));
                }

                var record = MessageBodies.WriteParts(_store, _appendOrThrow, id, NameUtf8, payload, out firstPart);
                address = AppendPublishOrThrow(record, out durable);
            }
            catch
            {
                ReleaseBodyCache(body);
                throw;
            }

            if (firstPart >= 0)
            {
                _firstPart[id] = firstPart;
            }

            newSegment = _space.Track(firstPart >= 0 ? firstPart : address, Footprint(payload.Length));
            _created = true;
            var entry = new MessageEntry(id, address, body, payload.Length, 0);
            if (due != 0)
            {
                _pendingDue[id] = due;
            }

            if (keyed is not null)
            {
                _pendingKeys[id] = _keys.Add(keyed.Key, keyed.Utf8, now, keyAddress, durable: false);
            }

            if (_pending.Count == 0 && durable.IsCompletedSuccessfully)
            {
                MakeVisibleLocked(entry);
                DispatchLocked(ref toComplete);
                id = 0;
            }
            else
            {
                _pending.Enqueue(entry);
            }
        }

        if (newSegment)
        {
            _engine.RequestMaintenance();
        }

        CompleteAll(toComplete);
        if (id == 0)
        {
            _engine.Metrics.Published(Name, started);
            completion = default;
        }
        else
        {
            completion = CompletePublishAsync(id, durable, started);
        }

        return PublishStep.Published;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask CompletePublishAsync(long id, ValueTask durable, long started)
    {
        try
        {
            await durable.ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            lock (SyncRoot)
            {
                _lostPublishes.Remove(id);
                _pendingDue.Remove(id);
                ForgetPendingKeyLocked(id);
                if (RemovePendingLocked(id) is { } entry)
                {
                    // The record may still reach the disk; an ACK record keeps it from coming back after a restart.
                    ForgetLocked(entry);
                    AppendBestEffort(LogRecord.Ack(id));
                }
            }

            _engine.RequestMaintenance();
            throw exception as MiniQueueStoreException
                ?? new MiniQueueStoreException($"The message to topic '{Name}' could not be made durable: {exception.Message}", exception);
        }

        LocalConsumer? toComplete = null;
        lock (SyncRoot)
        {
            if (_lostPublishes.Remove(id))
            {
                _pendingDue.Remove(id);
                ForgetPendingKeyLocked(id);
                throw new MiniQueueStoreException(
                    $"The message to topic '{Name}' could not be made durable: a write failed, and the log was reopened without its record.");
            }

            // Commits are prefixes of the log, so every publish of this topic appended before this one is durable too.
            // Ids, not addresses: compaction may have copied a pending record forward, past later ones.
            while (_pending.TryPeek(out var entry) && entry.Id <= id)
            {
                _pending.Dequeue();
                MakeVisibleLocked(entry);
            }

            DispatchLocked(ref toComplete);
        }

        CompleteAll(toComplete);
        _engine.Metrics.Published(Name, started);
    }

    private MessageEntry? RemovePendingLocked(long id)
    {
        MessageEntry? found = null;
        for (var count = _pending.Count; count > 0; count--)
        {
            var entry = _pending.Dequeue();
            if (entry.Id == id)
            {
                found = entry;
            }
            else
            {
                _pending.Enqueue(entry);
            }
        }

        return found;
    }

    /// <summary>The publish of <paramref name="id"/> failed: its idempotency key, if it had one, is not remembered.</summary>
    private void ForgetPendingKeyLocked(long id)
    {
        if (_pendingKeys.Count != 0 && _pendingKeys.Remove(id, out var key))
        {
            _keys.Forget(key);
        }
    }

    /// <summary>A durable publish joins the ready messages, or the delayed ones when it was published with a delay.</summary>
    private void MakeVisibleLocked(MessageEntry entry)
    {
        _lastVisibleId = entry.Id;
        if (_pendingKeys.Count != 0 && _pendingKeys.Remove(entry.Id, out var key))
        {
            // Its key counts from now on; a repeat that waited for it is a duplicate.
            key.IsDurable = true;
            key.Original?.TrySetResult(true);
        }

        if (_pendingDue.Count != 0 && _pendingDue.Remove(entry.Id, out var due))
        {
            _delayed.Enqueue(entry, new DueKey(due, ++_dackSequence));
            ArmTimerLocked(_time.GetUtcNow().UtcTicks);
            return;
        }

        _ready.Enqueue(entry);
    }

    /// <summary>Discards the ready and delayed messages; held ones stay with their consumers. Returns how many went.</summary>
    public ValueTask<int> PurgeAsync()
    {
        long address;
        int count;
        lock (SyncRoot)
        {
            ThrowIfClosedLocked();
            count = _outgoing.Count + _front.Count + _due.Count + _delayed.Count + _ready.Count;
            if (count == 0)
            {
                return ValueTask.FromResult(0);
            }

            var discarded = _outgoing.Concat(_front).Concat(_due).Concat(_delayed.UnorderedItems.Select(static item => item.Element)).Concat(_ready).ToArray();

            // The purge record discards this topic's messages up to the last id published here; a message that moved in
            // from another topic may have a higher id, and is discarded by a record of its own.
            foreach (var entry in discarded.Where(entry => entry.Id > _lastVisibleId))
            {
                AppendOrThrow(LogRecord.Ack(entry.Id));
            }

            address = AppendOrThrow(LogRecord.Purge(NameUtf8, _lastVisibleId));
            foreach (var entry in discarded)
            {
                ForgetLocked(entry);
            }

            _outgoing.Clear();
            _front.Clear();
            _due.Clear();
            _delayed.Clear();
            _ready.Clear();
        }

        return _store.IsCommitted(address) ? ValueTask.FromResult(count) : WaitForPurgeAsync(address, count);
    }

    private async ValueTask<int> WaitForPurgeAsync(long address, int count)
    {
        try
        {
            await _store.WaitForCommitAsync(address).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is not MiniQueueStoreException)
        {
            throw new MiniQueueStoreException($"The purge of topic '{Name}' could not be made durable: {exception.Message}", exception);
        }

        return count;
    }

    public TopicStats GetStats()
    {
        lock (SyncRoot)
        {
            PromoteDueLocked(_time.GetUtcNow().UtcTicks);
            return new TopicStats(_outgoing.Count + _front.Count + _due.Count + _ready.Count, _held, _delayed.Count, _consumers.Count);
        }
    }

    /// <summary>Adds a consumer; false if the topic was retired (the caller looks the topic up again).</summary>
    public bool TryAddConsumer(LocalConsumer consumer)
    {
        lock (SyncRoot)
        {
            if (_retired)
            {
                return false;
            }

            ThrowIfClosedLocked();
            _consumers.Add(consumer);
            return true;
        }
    }

    /// <summary>Removes a consumer; returns true when the topic should be forgotten (never created, nobody left).</summary>
    public bool RemoveConsumerLocked(LocalConsumer consumer)
    {
        _consumers.Remove(consumer);
        if (_consumers.Count == 0 && !_created && _pending.Count == 0 && !_closed)
        {
            _retired = true;
        }

        return _retired;
    }

    /// <summary>
    /// Takes the next message in delivery order, if there is one. A message that has had its last allowed delivery is
    /// not taken but set aside for the dead-letter topic, and the next one is looked at.
    /// </summary>
    public bool TryTakeLocked(out MessageEntry entry)
    {
        while (TakeNextLocked(out entry))
        {
            if (!IsSpentLocked(entry))
            {
                return true;
            }

            _outgoing.Add(entry);
            if (!_moveScheduled)
            {
                _moveScheduled = true;
                ThreadPool.UnsafeQueueUserWorkItem(static topic => topic._engine.MoveDeadLetters(topic), this, preferLocal: false);
            }
        }

        return false;
    }

    /// <summary>Whether the message has had its last allowed delivery (the topic limits deliveries).</summary>
    private bool IsSpentLocked(in MessageEntry entry) =>
        _policy.MaxDeliveries > 0 && _deliveries.TryGetValue(entry.Id, out var deliveries) && deliveries >= _policy.MaxDeliveries;

    private bool TakeNextLocked(out MessageEntry entry)
    {
        if (_front.TryPop(out entry))
        {
            return true;
        }

        PromoteDueLocked(_time.GetUtcNow().UtcTicks);
        return _due.TryDequeue(out entry) || _ready.TryDequeue(out entry);
    }

    /// <summary>The message <see cref="TakeNextLocked"/> would take, left in place.</summary>
    private bool PeekNextLocked(out MessageEntry entry)
    {
        if (_front.TryPeek(out entry))
        {
            return true;
        }

        PromoteDueLocked(_time.GetUtcNow().UtcTicks);
        return _due.TryPeek(out entry) || _ready.TryPeek(out entry);
    }

    public void HoldLocked(LocalConsumer consumer, MessageEntry entry)
    {
        consumer.HoldLocked(entry);
        _held++;
        if (_policy.MaxDeliveries > 0)
        {
            CollectionsMarshal.GetValueRefOrAddDefault(_deliveries, entry.Id, out _)++;
        }

        _engine.Metrics.Delivered(Name);
        AppendBestEffort(LogRecord.Deliver(entry.Id));
        if (_policy.LeaseTicks > 0)
        {
            StartLeaseLocked(consumer);
        }
    }

    /// <summary>Starts (or renews) the lease of the message <paramref name="consumer"/> holds.</summary>
    private void StartLeaseLocked(LocalConsumer consumer) => _scheduler.StartLease(consumer, _policy.LeaseTicks, NextDueLocked());

    /// <summary>TOUCH: renews the lease of the message <paramref name="consumer"/> holds (nothing to do without a lease).</summary>
    public void TouchLocked(LocalConsumer consumer)
    {
        if (_policy.LeaseTicks > 0)
        {
            StartLeaseLocked(consumer);
        }
    }

    /// <summary>
    /// Returns the messages whose lease has passed to the front, as NACK does (waiting consumers get them at once), and
    /// adds the sources of their deliveries' lease tokens to <paramref name="lapsed"/>, to be cancelled outside the lock.
    /// </summary>
    private void ExpireLeasesLocked(long now, ref LocalConsumer? toComplete, ref List<CancellationTokenSource>? lapsed)
    {
        while (_scheduler.TryTakeLapsed(now, out var consumer))
        {
            var entry = consumer.LapseLocked(out var lease);
            ReturnToFrontLocked(entry);
            _engine.Metrics.LeaseExpired(Name);
            EngineLog.LeaseExpired(_engine.Logger, Name, entry.Id);
            lapsed ??= [];
            if (lease is not null)
            {
                lapsed.Add(lease);
            }
        }

        if (lapsed is not null)
        {
            DispatchLocked(ref toComplete);
        }
    }

    public void AddWaiterLocked(LocalConsumer consumer, long wait) => _waiters.Enqueue((consumer, wait));

    /// <summary>Notes that a waiting consumer stopped waiting; its queue slot is skipped later.</summary>
    public void RemoveWaiterLocked()
    {
        if (++_staleWaiters > CompactStaleWaitersAbove && _staleWaiters > _waiters.Count / 2)
        {
            _waiters = new Queue<(LocalConsumer, long)>(_waiters.Where(static w => w.Consumer.IsWaitingFor(w.Wait)));
            _staleWaiters = 0;
        }
    }

    public void AckLocked(MessageEntry entry)
    {
        _held--;
        ForgetLocked(entry);
        AppendBestEffort(LogRecord.Ack(entry.Id));
    }

    public void NackLocked(MessageEntry entry, ref LocalConsumer? toComplete)
    {
        ReturnToFrontLocked(entry);
        DispatchLocked(ref toComplete);
    }

    /// <summary>A held message goes back to the front (NACK, or its lease passed); the caller dispatches.</summary>
    private void ReturnToFrontLocked(MessageEntry entry)
    {
        _held--;
        _front.Push(entry);
        AppendBestEffort(LogRecord.Nack(entry.Id));
    }

    public void BackLocked(MessageEntry entry, ref LocalConsumer? toComplete)
    {
        _held--;
        _ready.Enqueue(entry);
        AppendBestEffort(LogRecord.Back(entry.Id));
        DispatchLocked(ref toComplete);
    }

    public void DackLocked(MessageEntry entry, TimeSpan delay, ref LocalConsumer? toComplete)
    {
        _held--;
        entry.DackCount++;
        var now = _time.GetUtcNow().UtcTicks;
        var due = delay <= TimeSpan.Zero ? now : now + Math.Min(delay.Ticks, DateTimeOffset.MaxValue.UtcTicks - now);
        _delayed.Enqueue(entry, new DueKey(due, ++_dackSequence));
        AppendBestEffort(LogRecord.Dack(entry.Id, due, entry.DackCount));
        if (due <= now)
        {
            DispatchLocked(ref toComplete);
        }
        else
        {
            ArmTimerLocked(now);
        }
    }

    /// <summary>Hands available messages to waiting consumers, longest waiting first.</summary>
    private void DispatchLocked(ref LocalConsumer? toComplete)
    {
        while (_waiters.TryPeek(out var waiter))
        {
            if (!waiter.Consumer.IsWaitingFor(waiter.Wait))
            {
                _waiters.Dequeue();
                _staleWaiters = Math.Max(0, _staleWaiters - 1);
                continue;
            }

            if (!TryTakeLocked(out var entry))
            {
                return;
            }

            _waiters.Dequeue();
            HoldLocked(waiter.Consumer, entry);
            waiter.Consumer.NextToComplete = toComplete;
            toComplete = waiter.Consumer;
        }
    }

    /// <summary>Completes the waits of consumers that <see cref="DispatchLocked"/> handed a message, outside the lock.</summary>
    public static void CompleteAll(LocalConsumer? toComplete)
    {
        while (toComplete is not null)
        {
            var next = toComplete.NextToComplete;
            toComplete.NextToComplete = null;
            toComplete.CompleteWait();
            toComplete = next;
        }
    }

    public ValueTask<Delivery> ToDeliveryAsync(MessageEntry entry) =>
        entry.Body is { } body
            ? ValueTask.FromResult(new Delivery(body, entry.DackCount, entry.Id))
            : ReadDeliveryAsync(entry);

    private async ValueTask<Delivery> ReadDeliveryAsync(MessageEntry entry)
    {
        ReadOnlyMemory<byte> body;
        try
        {
            // A body a checkpoint just copied forward is readable once that copy is committed.
            if (!_store.IsCommitted(entry.Address))
            {
                await _store.WaitForCommitAsync(entry.Address).ConfigureAwait(false);
            }

            body = await MessageBodies.ReadAsync(_store, entry.Address, entry.Id, NameUtf8.Length, entry.Length).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is not MiniQueueStoreException)
        {
            throw new MiniQueueStoreException($"The body of message {entry.Id} could not be read: {exception.Message}", exception);
        }

        return new Delivery(body, entry.DackCount, entry.Id);
    }

    private void PromoteDueLocked(long now)
    {
        while (_delayed.TryPeek(out var entry, out var key) && key.DueTicks <= now)
        {
            _delayed.Dequeue();
            _due.Enqueue(entry);
        }
    }

    /// <summary>Arms the topic's timer for its earliest due time or lease deadline.</summary>
    private void ArmTimerLocked(long now) => _scheduler.Arm(now, NextDueLocked());

    /// <summary>When the earliest delayed message comes due (long.MaxValue when none is delayed).</summary>
    private long NextDueLocked() => _delayed.TryPeek(out _, out var key) ? key.DueTicks : long.MaxValue;

    private void OnTimer()
    {
        LocalConsumer? toComplete = null;
        List<CancellationTokenSource>? lapsed = null;
        lock (SyncRoot)
        {
            _scheduler.Fired();
            if (_closed)
            {
                return;
            }

            var now = _time.GetUtcNow().UtcTicks;
            ExpireLeasesLocked(now, ref toComplete, ref lapsed);
            PromoteDueLocked(now);
            DispatchLocked(ref toComplete);
            ArmTimerLocked(now);
        }

        if (lapsed is not null)
        {
            // Whoever watches a lapsed delivery's token hears it now (its consumer already holds nothing).
            foreach (var lease in lapsed)
            {
                try
                {
                    lease.Cancel();
                }
                catch (AggregateException exception)
                {
                    // A watcher's callback failed; the timer thread must go on.
                    EngineLog.LeaseCallbackFailed(_engine.Logger, Name, exception);
                }
            }
        }

        CompleteAll(toComplete);
    }

    /// <summary>Rebuilds the topic from recovered state (entries without bodies: the store reads them back).</summary>
    public void Restore(
        IReadOnlyList<MessageEntry> front, IEnumerable<(MessageEntry Entry, DueKey Key)> delayed, IEnumerable<MessageEntry> ready,
        IReadOnlyDictionary<long, long> firstParts, IReadOnlyDictionary<long, int> deliveries, IReadOnlyList<RecoveredKey> keys,
        long lastId, long dackSequence)
    {
        lock (SyncRoot)
        {
            foreach (var key in keys)
            {
                _keys.Add(Encoding.UTF8.GetString(key.Utf8), key.Utf8, key.PublishedTicks, key.Address, durable: true);
            }

            _keys.Expire(_time.GetUtcNow().UtcTicks);

            foreach (var (id, count) in deliveries)
            {
                _deliveries[id] = count;
            }

            foreach (var (id, first) in firstParts)
            {
                _firstPart[id] = first;
            }

            Debug.Assert(_front.Count + _delayed.Count + _ready.Count == 0, "Restore runs on a new topic.");
            for (var i = front.Count - 1; i >= 0; i--)
            {
                _front.Push(front[i]);
            }

            foreach (var (entry, key) in delayed)
            {
                _delayed.Enqueue(entry, key);
            }

            foreach (var entry in ready)
            {
                _ready.Enqueue(entry);
            }

            foreach (var entry in _front.Concat(_delayed.UnorderedItems.Select(static item => item.Element)).Concat(_ready))
            {
                _space.Track(FirstOf(entry), Footprint(entry.Length));
            }

            _lastVisibleId = lastId;
            _dackSequence = dackSequence;
            _created = true;
            ArmTimerLocked(_time.GetUtcNow().UtcTicks);
        }
    }

    /// <summary>
    /// Phase one of a checkpoint (see <see cref="TryWriteCheckpoint"/>): the messages whose bodies lie before
    /// <paramref name="relocateBelow"/> and are not in memory, so the engine can read them back without the lock.
    /// </summary>
    public List<MessageEntry> CollectBodiesToRead(long relocateBelow)
    {
        lock (SyncRoot)
        {
            return [.. AllEntriesLocked().Where(entry => entry.Body is null && FirstOf(entry) < relocateBelow)];
        }
    }

    /// <summary>
    /// Whether any message of the topic has its body before <paramref name="address"/>, or a remembered idempotency key
    /// its record: a truncation there needs a checkpoint of the topic first.
    /// </summary>
    public bool HasBodiesBefore(long address)
    {
        lock (SyncRoot)
        {
            return _keys.OldestAddress(_time.GetUtcNow().UtcTicks) < address || AllEntriesLocked().Any(entry => FirstOf(entry) < address);
        }
    }

    /// <summary>
    /// Writes the topic's whole state to the log as a checkpoint, after copying forward the bodies that lie before
    /// <paramref name="relocateBelow"/> (their segments are about to be freed) and those that a reopened log
    /// <paramref name="lost"/>. A not-yet-durable publish that was lost is dropped: its publisher was told it failed.
    /// A visible message that was lost and whose body is not in memory (possible only when publishes are acknowledged
    /// before the commit) is dropped too.
    /// </summary>
    /// <returns>False, writing nothing, when a body before <paramref name="relocateBelow"/> is neither in memory nor in <paramref name="readBodies"/>.</returns>
    public bool TryWriteCheckpoint(
        long checkpointId, long relocateBelow, LostRange lost, IReadOnlyDictionary<long, ReadOnlyMemory<byte>> readBodies,
        out long endAddress, out int dropped)
    {
        lock (SyncRoot)
        {
            endAddress = 0;
            dropped = 0;
            if (_closed || AllEntriesLocked().Any(entry => FirstOf(entry) < relocateBelow && entry.Body is null && !readBodies.ContainsKey(entry.Id)))
            {
                return false;
            }

            var held = _consumers.Where(static consumer => consumer.IsHoldingLocked).Select(static consumer => (consumer, consumer.HeldLocked))
                .OrderBy(static pair => pair.HeldLocked.Id).ToArray();
            // Messages set aside for the dead-letter topic stay this topic's until moved: the checkpoint puts them back at
            // the front (a later take sets them aside again).
            var front = _outgoing.Concat(_front).ToArray();
            var due = _due.ToArray();
            var delayed = _delayed.UnorderedItems.OrderBy(static item => item.Priority).ToArray();
            var ready = _ready.ToArray();
            var pending = _pending.ToArray();

            // In delivery order: held (as delivered), front, due, delayed, ready, then the publishes not durable yet.
            var items = new List<CheckpointItem>(held.Length + front.Length + due.Length + delayed.Length + ready.Length + pending.Length);
            void Add(MessageEntry entry, CheckpointClass kind, long dueTicks, bool isPending = false) =>
                items.Add(new CheckpointItem(entry, FirstOf(entry), kind, dueTicks, _deliveries.GetValueOrDefault(entry.Id), isPending));
            foreach (var (_, entry) in held)
            {
                Add(entry, CheckpointClass.Held, 0);
            }

            foreach (var entry in front)
            {
                Add(entry, CheckpointClass.Front, 0);
            }

            foreach (var entry in due)
            {
                Add(entry, CheckpointClass.Delayed, 0);
            }

            foreach (var (entry, key) in delayed)
            {
                Add(entry, CheckpointClass.Delayed, key.DueTicks);
            }

            foreach (var entry in ready)
            {
                Add(entry, CheckpointClass.Ready, 0);
            }

            foreach (var entry in pending)
            {
                var isDelayed = _pendingDue.TryGetValue(entry.Id, out var dueTicks);
                Add(entry, isDelayed ? CheckpointClass.Delayed : CheckpointClass.Ready, isDelayed ? dueTicks : 0, isPending: true);
            }

            _keys.Expire(_time.GetUtcNow().UtcTicks);
            var result = CheckpointWriter.Write(_store, _appendOrThrow, checkpointId, NameUtf8, items, relocateBelow, lost, readBodies, _keys.Durable());
            endAddress = result.EndAddress;
            _keys.Relocate(result.BeginAddress);
            var gone = result.Gone;
            var moved = result.Moved;
            var movedFirst = result.MovedFirst;
            MessageEntry? Rewrite(MessageEntry entry)
            {
                if (gone.Contains(entry.Id))
                {
                    return null;
                }

                if (moved.TryGetValue(entry.Id, out var address))
                {
                    entry.Address = address;
                }

                return entry;
            }

            var newHeld = held.Select(pair => (pair.consumer, Entry: Rewrite(pair.HeldLocked))).ToArray();
            var newFront = front.Select(Rewrite).ToArray();
            var newDue = due.Select(Rewrite).ToArray();
            var newDelayed = delayed.Select(item => (Entry: Rewrite(item.Element), item.Priority)).ToArray();
            var newReady = ready.Select(Rewrite).ToArray();
            var newPending = pending.Select(Rewrite).ToArray();

            // The checkpoint is in the log: now memory follows it. Publishers of pending messages it dropped hear so.
            foreach (var entry in pending.Where(entry => gone.Contains(entry.Id)))
            {
                _lostPublishes.Add(entry.Id);
                _pendingDue.Remove(entry.Id);
                ForgetPendingKeyLocked(entry.Id);
            }

            foreach (var entry in held.Select(static pair => pair.HeldLocked).Concat(front).Concat(due)
                .Concat(delayed.Select(static item => item.Element)).Concat(ready).Concat(pending))
            {
                if (gone.Contains(entry.Id))
                {
                    ForgetLocked(entry);
                    dropped++;
                }
                else if (moved.TryGetValue(entry.Id, out var address))
                {
                    var footprint = Footprint(entry.Length);
                    _space.Release(FirstOf(entry), footprint);
                    if (movedFirst.TryGetValue(entry.Id, out var first))
                    {
                        _firstPart[entry.Id] = first;
                        _space.Track(first, footprint);
                    }
                    else
                    {
                        _firstPart.Remove(entry.Id);
                        _space.Track(address, footprint);
                    }
                }
            }

            foreach (var (consumer, entry) in newHeld)
            {
                if (entry is { } kept)
                {
                    consumer.ReplaceHeldLocked(kept);
                }
                else
                {
                    consumer.DropHeldLocked();
                    _held--;
                }
            }

            _outgoing.Clear();
            _front.Clear();
            foreach (var entry in newFront.Reverse())
            {
                if (entry is { } kept)
                {
                    _front.Push(kept);
                }
            }

            Refill(_due, newDue);
            _delayed.Clear();
            foreach (var (entry, key) in newDelayed)
            {
                if (entry is { } kept)
                {
                    _delayed.Enqueue(kept, key);
                }
            }

            _ready.Clear();
            foreach (var entry in newReady)
            {
                if (entry is { } kept)
                {
                    _ready.Enqueue(kept);
                }
            }

            Refill(_pending, newPending);
            return true;
        }

        static void Refill(Queue<MessageEntry> queue, MessageEntry?[] entries)
        {
            queue.Clear();
            foreach (var entry in entries)
            {
                if (entry is { } kept)
                {
                    queue.Enqueue(kept);
                }
            }
        }
    }

    /// <summary>How many messages the topic has, whatever their state (a checkpoint writes an entry for each).</summary>
    public int CountAll()
    {
        lock (SyncRoot)
        {
            return _held + _outgoing.Count + _front.Count + _due.Count + _delayed.Count + _ready.Count + _pending.Count;
        }
    }

    /// <summary>Every message of the topic: held, front, due, delayed, ready and not yet durable.</summary>
    private IEnumerable<MessageEntry> AllEntriesLocked() =>
        _consumers.Where(static consumer => consumer.IsHoldingLocked).Select(static consumer => consumer.HeldLocked)
            .Concat(_outgoing).Concat(_front).Concat(_due).Concat(_delayed.UnorderedItems.Select(static item => item.Element)).Concat(_ready).Concat(_pending);

    /// <summary>Ends every consumer (held messages return to the front), then refuses further work.</summary>
    public async ValueTask CloseAsync()
    {
        LocalConsumer[] consumers;
        lock (SyncRoot)
        {
            consumers = [.. _consumers];
        }

        foreach (var consumer in consumers)
        {
            await consumer.DisposeAsync().ConfigureAwait(false);
        }

        lock (SyncRoot)
        {
            _closed = true;
            _scheduler.Stop();
        }
    }

    public void ThrowIfClosedLocked() => ObjectDisposedException.ThrowIf(_closed, typeof(MiniQueueEngine));

    /// <summary>The space the publish record of a body of <paramref name="length"/> bytes takes in the store.</summary>
    private long Footprint(int length) => MessageBodies.Footprint(_store, NameUtf8.Length, length);

    /// <summary>Where a message's body starts in the log: its first part, or its publish record.</summary>
    private long FirstOf(in MessageEntry entry) =>
        _firstPart.Count != 0 && _firstPart.TryGetValue(entry.Id, out var first) ? first : entry.Address;

    /// <summary>A message is gone for good: its body no longer keeps its log segment alive or its cache bytes taken.</summary>
    private void ForgetLocked(MessageEntry entry)
    {
        if (_readAhead?.Id == entry.Id)
        {
            _readAhead = null;
        }

        if (_deliveries.Count != 0)
        {
            _deliveries.Remove(entry.Id);
        }

        _space.Release(FirstOf(entry), Footprint(entry.Length));
        _firstPart.Remove(entry.Id);
        ReleaseBodyCache(entry.Body);
    }

    private void ReleaseBodyCache(byte[]? body)
    {
        if (body is not null && _store.CanRead)
        {
            _engine.ReleaseBodyCache(body.Length);
        }
    }

    private long AppendPublishOrThrow(LogRecord record, out ValueTask durable)
    {
        try
        {
            var address = _store.AppendPublish(record, out durable);
            NoteAddress(address);
            return address;
        }
        catch (Exception exception) when (exception is not MiniQueueStoreException)
        {
            throw new MiniQueueStoreException($"The store did not take a {record.Kind} record for topic '{Name}': {exception.Message}", exception);
        }
    }

    private long AppendOrThrow(LogRecord record)
    {
        try
        {
            var address = _store.Append(record);
            NoteAddress(address);
            return address;
        }
        catch (Exception exception) when (exception is not MiniQueueStoreException)
        {
            throw new MiniQueueStoreException($"The store did not take a {record.Kind} record for topic '{Name}': {exception.Message}", exception);
        }
    }

    /// <summary>
    /// A record that starts a new log segment is a moment to look for segments to free: consumers that only settle
    /// (publishes refused on a full disk) must free space too.
    /// </summary>
    private void NoteAddress(long address)
    {
        if (_space.NoteRecord(address))
        {
            _engine.RequestMaintenance();
        }
    }

    /// <summary>
    /// Logs a record whose loss costs at most a redelivery after a crash (at-least-once), so a failing store
    /// does not stop consumers.
    /// </summary>
    private void AppendBestEffort(LogRecord record)
    {
        try
        {
            NoteAddress(_store.Append(record));
        }
        catch (Exception exception)
        {
            _engine.OnRecordNotLogged(record, Name, exception);
        }
    }
}
