using System.Diagnostics;
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
internal sealed class TopicQueue
{
    private const int CompactStaleWaitersAbove = 64;

    private static readonly TimerCallback s_onTimer = static state => ((TopicQueue)state!).OnTimer();

    private readonly MiniQueueEngine _engine;
    private readonly IMessageStore _store;
    private readonly TimeProvider _time;
    private readonly long _periodTicks;

    private readonly Stack<MessageEntry> _front = new();
    private readonly Queue<MessageEntry> _due = new();
    private readonly PriorityQueue<MessageEntry, DueKey> _delayed = new();
    private readonly Queue<MessageEntry> _ready = new();
    private readonly Queue<MessageEntry> _pending = new();
    private Queue<(MiniQueueConsumer Consumer, long Wait)> _waiters = new();
    private readonly HashSet<MiniQueueConsumer> _consumers = [];
    private int _held;
    private int _staleWaiters;
    private long _lastVisibleId;
    private long _dackSequence;
    private ITimer? _timer;
    private long _timerFiresAt = long.MaxValue;
    private bool _created;
    private bool _retired;
    private bool _closed;

    public TopicQueue(MiniQueueEngine engine, IMessageStore store, string name, TimeProvider time, TimeSpan period)
    {
        _engine = engine;
        _store = store;
        _time = time;
        _periodTicks = period.Ticks;
        Name = name;
        NameUtf8 = TopicName.ToUtf8(name);
    }

    public Lock SyncRoot { get; } = new();

    public string Name { get; }

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
    public bool TryPublish(ReadOnlyMemory<byte> payload, out ValueTask completion)
    {
        var body = _store.CanRead ? null : payload.ToArray();
        MiniQueueConsumer? toComplete = null;
        long id;
        long address;
        lock (SyncRoot)
        {
            if (_retired)
            {
                completion = default;
                return false;
            }

            ThrowIfClosedLocked();
            id = _engine.NextMessageId();
            address = AppendOrThrow(LogRecord.Publish(id, NameUtf8, payload));
            _created = true;
            var entry = new MessageEntry(id, address, body, 0);
            if (_pending.Count == 0 && _store.IsCommitted(address))
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

        CompleteAll(toComplete);
        completion = id == 0 ? default : CompletePublishAsync(id, address);
        return true;
    }

    private async ValueTask CompletePublishAsync(long id, long address)
    {
        try
        {
            await _store.WaitForCommitAsync(address).ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            lock (SyncRoot)
            {
                if (RemovePendingLocked(id))
                {
                    // The record may still reach the disk; an ACK record keeps it from coming back after a restart.
                    AppendBestEffort(LogRecord.Ack(id));
                }
            }

            throw exception as MiniQueueStoreException
                ?? new MiniQueueStoreException($"The message to topic '{Name}' could not be made durable: {exception.Message}", exception);
        }

        MiniQueueConsumer? toComplete = null;
        lock (SyncRoot)
        {
            // Commits are prefixes of the log, so everything pending up to this address is durable too.
            while (_pending.TryPeek(out var entry) && entry.Address <= address)
            {
                _pending.Dequeue();
                MakeVisibleLocked(entry);
            }

            DispatchLocked(ref toComplete);
        }

        CompleteAll(toComplete);
    }

    private bool RemovePendingLocked(long id)
    {
        var found = false;
        for (var count = _pending.Count; count > 0; count--)
        {
            var entry = _pending.Dequeue();
            if (entry.Id == id)
            {
                found = true;
            }
            else
            {
                _pending.Enqueue(entry);
            }
        }

        return found;
    }

    private void MakeVisibleLocked(MessageEntry entry)
    {
        _ready.Enqueue(entry);
        _lastVisibleId = entry.Id;
    }

    /// <summary>Discards the ready and delayed messages; held ones stay with their consumers. Returns how many went.</summary>
    public ValueTask<int> PurgeAsync()
    {
        long address;
        int count;
        lock (SyncRoot)
        {
            ThrowIfClosedLocked();
            count = _front.Count + _due.Count + _delayed.Count + _ready.Count;
            if (count == 0)
            {
                return ValueTask.FromResult(0);
            }

            address = AppendOrThrow(LogRecord.Purge(NameUtf8, _lastVisibleId));
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
            return new TopicStats(_front.Count + _due.Count + _ready.Count, _held, _delayed.Count, _consumers.Count);
        }
    }

    /// <summary>Adds a consumer; false if the topic was retired (the caller looks the topic up again).</summary>
    public bool TryAddConsumer(MiniQueueConsumer consumer)
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
    public bool RemoveConsumerLocked(MiniQueueConsumer consumer)
    {
        _consumers.Remove(consumer);
        if (_consumers.Count == 0 && !_created && _pending.Count == 0 && !_closed)
        {
            _retired = true;
        }

        return _retired;
    }

    /// <summary>Takes the next message in delivery order, if there is one.</summary>
    public bool TryTakeLocked(out MessageEntry entry)
    {
        if (_front.TryPop(out entry))
        {
            return true;
        }

        PromoteDueLocked(_time.GetUtcNow().UtcTicks);
        return _due.TryDequeue(out entry) || _ready.TryDequeue(out entry);
    }

    public void HoldLocked(MiniQueueConsumer consumer, MessageEntry entry)
    {
        consumer.HoldLocked(entry);
        _held++;
        AppendBestEffort(LogRecord.Deliver(entry.Id));
    }

    public void AddWaiterLocked(MiniQueueConsumer consumer, long wait) => _waiters.Enqueue((consumer, wait));

    /// <summary>Notes that a waiting consumer stopped waiting; its queue slot is skipped later.</summary>
    public void RemoveWaiterLocked()
    {
        if (++_staleWaiters > CompactStaleWaitersAbove && _staleWaiters > _waiters.Count / 2)
        {
            _waiters = new Queue<(MiniQueueConsumer, long)>(_waiters.Where(static w => w.Consumer.IsWaitingFor(w.Wait)));
            _staleWaiters = 0;
        }
    }

    public void AckLocked(MessageEntry entry)
    {
        _held--;
        AppendBestEffort(LogRecord.Ack(entry.Id));
    }

    public void NackLocked(MessageEntry entry, ref MiniQueueConsumer? toComplete)
    {
        _held--;
        _front.Push(entry);
        AppendBestEffort(LogRecord.Nack(entry.Id));
        DispatchLocked(ref toComplete);
    }

    public void BackLocked(MessageEntry entry, ref MiniQueueConsumer? toComplete)
    {
        _held--;
        _ready.Enqueue(entry);
        AppendBestEffort(LogRecord.Back(entry.Id));
        DispatchLocked(ref toComplete);
    }

    public void DackLocked(MessageEntry entry, TimeSpan delay, ref MiniQueueConsumer? toComplete)
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
    private void DispatchLocked(ref MiniQueueConsumer? toComplete)
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
    public static void CompleteAll(MiniQueueConsumer? toComplete)
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
        ReadOnlyMemory<byte> data;
        try
        {
            data = await _store.ReadAsync(entry.Address).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is not MiniQueueStoreException)
        {
            throw new MiniQueueStoreException($"The body of message {entry.Id} could not be read: {exception.Message}", exception);
        }

        var record = LogRecord.Read(data);
        if (record.Kind != LogRecordKind.Publish || record.MessageId != entry.Id)
        {
            throw new MiniQueueStoreException($"The store returned a {record.Kind} record of message {record.MessageId} for message {entry.Id}.");
        }

        return new Delivery(record.Payload, entry.DackCount, entry.Id);
    }

    private void PromoteDueLocked(long now)
    {
        while (_delayed.TryPeek(out var entry, out var key) && key.DueTicks <= now)
        {
            _delayed.Dequeue();
            _due.Enqueue(entry);
        }
    }

    /// <summary>Arms the timer for the earliest due time, capped at one period from now.</summary>
    private void ArmTimerLocked(long now)
    {
        if (_closed || !_delayed.TryPeek(out _, out var key))
        {
            return;
        }

        var firesAt = Math.Min(key.DueTicks, now + _periodTicks);
        if (firesAt >= _timerFiresAt)
        {
            return;
        }

        _timerFiresAt = firesAt;

        // Whole milliseconds, rounded up, and never zero: timers must not fire before the due time.
        var milliseconds = Math.Max(1, (firesAt - now + TimeSpan.TicksPerMillisecond - 1) / TimeSpan.TicksPerMillisecond);
        var dueIn = TimeSpan.FromMilliseconds(milliseconds);
        if (_timer is null)
        {
            _timer = _time.CreateTimer(s_onTimer, this, dueIn, Timeout.InfiniteTimeSpan);
        }
        else
        {
            _timer.Change(dueIn, Timeout.InfiniteTimeSpan);
        }
    }

    private void OnTimer()
    {
        MiniQueueConsumer? toComplete = null;
        lock (SyncRoot)
        {
            _timerFiresAt = long.MaxValue;
            if (_closed)
            {
                return;
            }

            var now = _time.GetUtcNow().UtcTicks;
            PromoteDueLocked(now);
            DispatchLocked(ref toComplete);
            ArmTimerLocked(now);
        }

        CompleteAll(toComplete);
    }

    /// <summary>Rebuilds the topic from recovered state.</summary>
    public void Restore(
        IReadOnlyList<MessageEntry> front, IEnumerable<(MessageEntry Entry, DueKey Key)> delayed, IEnumerable<MessageEntry> ready,
        long lastId, long dackSequence)
    {
        lock (SyncRoot)
        {
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

            _lastVisibleId = lastId;
            _dackSequence = dackSequence;
            _created = true;
            ArmTimerLocked(_time.GetUtcNow().UtcTicks);
        }
    }

    /// <summary>Ends every consumer (held messages return to the front), then refuses further work.</summary>
    public async ValueTask CloseAsync()
    {
        MiniQueueConsumer[] consumers;
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
            _timer?.Dispose();
            _timer = null;
        }
    }

    public void ThrowIfClosedLocked() => ObjectDisposedException.ThrowIf(_closed, typeof(MiniQueueEngine));

    private long AppendOrThrow(LogRecord record)
    {
        try
        {
            return _store.Append(record);
        }
        catch (Exception exception) when (exception is not MiniQueueStoreException)
        {
            throw new MiniQueueStoreException($"The store did not take a {record.Kind} record for topic '{Name}': {exception.Message}", exception);
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
            _store.Append(record);
        }
        catch (Exception exception)
        {
            _engine.OnRecordNotLogged(record, Name, exception);
        }
    }
}
