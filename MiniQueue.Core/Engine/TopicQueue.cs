using System.Runtime.InteropServices;
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
    private readonly TopicJournal _journal;
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

    private readonly Stack<MessageEntry> _front = new();
    private readonly EntryQueue _due = new();
    private readonly DelayedQueue _delayed = new();
    private readonly EntryQueue _ready = new();

    /// <summary>The idempotency keys the topic remembers (see <see cref="IdempotencyKeys"/>).</summary>
    private readonly IdempotencyKeys _keys;

    private Queue<(LocalConsumer Consumer, long Wait)> _waiters = new();
    private readonly HashSet<LocalConsumer> _consumers = [];
    private int _held;
    private int _staleWaiters;
    private long _lastVisibleId;
    private long _dackSequence;
    private bool _created;
    private bool _retired;
    private bool _closed;

    /// <summary>A topic of <paramref name="engine"/>; <paramref name="journal"/> makes its storage side (see <see cref="TopicJournal"/>).</summary>
    public TopicQueue(
        LocalBackend engine, Func<TopicQueue, TopicJournal> journal, string name, TimeProvider time, TimeSpan period, TopicPolicy policy, long rank)
    {
        Rank = rank;
        _keys = new IdempotencyKeys(policy.IdempotencyWindowTicks);
        _policy = policy;
        _engine = engine;
        _time = time;
        _scheduler = new TopicScheduler(time, period.Ticks, OnTimer);
        Name = name;
        NameUtf8 = TopicName.ToUtf8(name);
        _journal = journal(this);
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

    /// <summary>Appends a message; it is delivered once the journal says it is durable. Returns false if the topic was retired.</summary>
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
        completion = default;
        var delayTicks = options is { Delay: var delay } && delay > TimeSpan.Zero ? delay.Ticks : 0;
        var body = _journal.KeepBody(payload);
        LocalConsumer? toComplete = null;
        bool visible;
        lock (SyncRoot)
        {
            MessageEntry entry;
            long keyAddress;
            ValueTask durable;
            long due = 0;
            long now = 0;
            var reserved = false;
            try
            {
                if (_retired)
                {
                    _journal.DropBody(body);
                    return PublishStep.Retired;
                }

                ThrowIfClosedLocked();
                if (keyed is not null)
                {
                    now = _time.GetUtcNow().UtcTicks;
                    _keys.Expire(now);
                    if (_keys.Find(keyed.Key) is { } known)
                    {
                        _journal.DropBody(body);
                        if (known.IsDurable)
                        {
                            return PublishStep.Duplicate;
                        }

                        original = (known.Original ??= new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
                        return PublishStep.AwaitOriginal;
                    }
                }

                if (delayTicks > 0)
                {
                    now = _time.GetUtcNow().UtcTicks;
                    due = now + Math.Min(delayTicks, DateTimeOffset.MaxValue.UtcTicks - now);
                }

                if (!_created)
                {
                    _engine.ReserveTopic(Name);
                    reserved = true;
                }

                entry = _journal.AppendPublishLocked(_engine.NextMessageId(), payload, body, due, keyed?.Utf8, now, out keyAddress, out durable);
            }
            catch
            {
                _journal.DropBody(body);
                if (reserved)
                {
                    _engine.ReleaseTopic();
                }

                throw;
            }

            _created = true;
            var key = keyed is null ? null : _keys.Add(keyed.Key, keyed.Utf8, now, keyAddress, durable: false);
            var publish = new PendingPublish(entry, due, key);
            visible = _journal.TrackPublishLocked(publish, durable, started, out completion);
            if (visible)
            {
                MakeVisibleLocked(publish);
                DispatchLocked(ref toComplete);
            }
        }

        CompleteAll(toComplete);
        if (visible)
        {
            PublishCompleted(started);
        }

        return PublishStep.Published;
    }

    /// <summary>A publish is durable: it counts in the metrics.</summary>
    public void PublishCompleted(long started) => _engine.Metrics.Published(Name, started);

    /// <summary>A publish could not be made durable: its idempotency key, if it had one, is not remembered.</summary>
    public void PublishFailedLocked(in PendingPublish publish)
    {
        if (publish.Key is { } key)
        {
            _keys.Forget(key);
        }
    }

    /// <summary>A durable publish joins the ready messages, or the delayed ones when it was published with a delay.</summary>
    public void MakeVisibleLocked(in PendingPublish publish)
    {
        var entry = publish.Entry;
        _lastVisibleId = entry.Id;
        if (publish.Key is { } key)
        {
            // Its key counts from now on; a repeat that waited for it is a duplicate.
            key.IsDurable = true;
            key.Original?.TrySetResult(true);
        }

        if (publish.DueTicks != 0)
        {
            _delayed.Enqueue(entry, new DueKey(publish.DueTicks, ++_dackSequence));
            ArmTimerLocked(_time.GetUtcNow().UtcTicks);
            return;
        }

        _ready.Enqueue(entry);
    }

    /// <summary>Discards the ready and delayed messages; held ones stay with their consumers. Returns how many went.</summary>
    public ValueTask<int> PurgeAsync()
    {
        ValueTask durable;
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
            durable = _journal.PurgedLocked(discarded, _lastVisibleId);
            foreach (var entry in discarded)
            {
                ForgetStateLocked(entry);
            }

            _outgoing.Clear();
            _front.Clear();
            _due.Clear();
            _delayed.Clear();
            _ready.Clear();
        }

        return durable.IsCompletedSuccessfully ? ValueTask.FromResult(count) : CountWhenDurableAsync(durable, count);
    }

    private static async ValueTask<int> CountWhenDurableAsync(ValueTask durable, int count)
    {
        await durable.ConfigureAwait(false);
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
        if (_consumers.Count == 0 && !_created && !_journal.HasPendingLocked && !_closed)
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

    /// <summary>
    /// For <see cref="LocalConsumer.TryReceive"/>, which never waits for a disk read: takes the next message only when
    /// its body is at hand (in memory, or read ahead by an earlier call), with that body. When the body must be read
    /// first, it takes nothing, starts reading it ahead (one read at a time per topic) and returns false.
    /// </summary>
    public bool TryTakeAtHandLocked(out MessageEntry entry, out ReadOnlyMemory<byte>? readAhead)
    {
        readAhead = null;
        while (PeekNextLocked(out entry))
        {
            if (IsSpentLocked(entry))
            {
                // Set aside for the dead-letter topic, as a take would; then look at the next one.
                TryTakeLocked(out _);
                continue;
            }

            if (!_journal.TryBodyAtHandLocked(entry, out readAhead))
            {
                return false;
            }

            return TakeNextLocked(out entry);
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

    /// <summary>
    /// For a read ahead of bodies from the log: adds to <paramref name="into"/>, in delivery order, the ready messages
    /// whose bodies are not in memory and whose records start in [<paramref name="from"/>, <paramref name="until"/>),
    /// looking at no more than the first <paramref name="max"/> ready messages.
    /// </summary>
    public void UpcomingOnDiskLocked(List<MessageEntry> into, long from, long until, int max)
    {
        var looked = 0;
        foreach (var entry in _ready)
        {
            if (++looked > max || entry.Address >= until)
            {
                return;
            }

            if (entry.Body is null && entry.Address >= from)
            {
                into.Add(entry);
            }
        }
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
        _journal.DeliveredLocked(entry.Id);
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
        ForgetStateLocked(entry);
        _journal.AckedLocked(entry);
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
        _journal.ReturnedLocked(entry.Id);
    }

    public void BackLocked(MessageEntry entry, ref LocalConsumer? toComplete)
    {
        _held--;
        _ready.Enqueue(entry);
        _journal.BackedLocked(entry.Id);
        DispatchLocked(ref toComplete);
    }

    public void DackLocked(MessageEntry entry, TimeSpan delay, ref LocalConsumer? toComplete)
    {
        _held--;
        entry.DackCount++;
        var now = _time.GetUtcNow().UtcTicks;
        var due = delay <= TimeSpan.Zero ? now : now + Math.Min(delay.Ticks, DateTimeOffset.MaxValue.UtcTicks - now);
        _delayed.Enqueue(entry, new DueKey(due, ++_dackSequence));
        _journal.DackedLocked(entry.Id, due, entry.DackCount);
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
    public void DispatchLocked(ref LocalConsumer? toComplete)
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

    private async ValueTask<Delivery> ReadDeliveryAsync(MessageEntry entry) =>
        new(await _journal.ReadBodyAsync(entry).ConfigureAwait(false), entry.DackCount, entry.Id);

    private void PromoteDueLocked(long now)
    {
        while (_delayed.TryDequeue(now, out var entry, out _))
        {
            _due.Enqueue(entry);
        }
    }

    /// <summary>Arms the topic's timer for its earliest due time or lease deadline.</summary>
    private void ArmTimerLocked(long now) => _scheduler.Arm(now, NextDueLocked());

    /// <summary>When the earliest delayed message comes due (long.MaxValue when none is delayed).</summary>
    private long NextDueLocked() => _delayed.TryPeekKey(out var key) ? key.DueTicks : long.MaxValue;

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

    /// <summary>
    /// Ends every consumer (held messages return to the front), then refuses further work. Consumers that hold nothing
    /// end first, so that a message returned by a holder is not handed to a waiter that is about to end too.
    /// </summary>
    public async ValueTask CloseAsync()
    {
        LocalConsumer[] consumers;
        lock (SyncRoot)
        {
            consumers = [.. _consumers.OrderBy(static consumer => consumer.IsHoldingLocked)];
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

    /// <summary>A message is gone for good: the topic forgets its delivery count.</summary>
    private void ForgetStateLocked(in MessageEntry entry)
    {
        if (_deliveries.Count != 0)
        {
            _deliveries.Remove(entry.Id);
        }
    }
}
