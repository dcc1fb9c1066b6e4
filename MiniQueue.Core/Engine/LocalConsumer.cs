using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Tasks.Sources;
using MiniQueue.Backend;

namespace MiniQueue.Engine;

/// <summary>
/// A consumer of one topic of the <see cref="LocalBackend"/>, its state guarded by the topic's lock. The public members
/// follow the contract <see cref="MiniQueueConsumer"/> documents.
/// </summary>
internal sealed class LocalConsumer : IQueueConsumer
{
    private static readonly Action<object?, CancellationToken> s_cancelWait =
        static (state, token) => ((LocalConsumer)state!).EndWait(new OperationCanceledException(token));

    private readonly LocalBackend _engine;
    private readonly TopicQueue _topic;
    /// <summary>The wait for a message, completed by the topic (kept apart so that the consumer does not expose it).</summary>
    private readonly WaitSignal _source = new();
    private CancellationTokenRegistration _cancellation;

    // Guarded by _topic.SyncRoot.
    private bool _isHolding;
    private MessageEntry _held;
    private bool _isWaiting;
    private long _wait;
    private bool _isDisposed;
    private bool _leaseLapsed;
    private CancellationTokenSource? _lease;

    internal LocalConsumer(LocalBackend engine, TopicQueue topic)
    {
        _engine = engine;
        _topic = topic;
    }

    /// <summary>The topic this consumer consumes.</summary>
    public string Topic => _topic.Name;

    /// <summary>Whether the consumer holds a message it has not settled yet.</summary>
    public bool IsHoldingMessage
    {
        get
        {
            lock (_topic.SyncRoot)
            {
                return _isHolding;
            }
        }
    }

    /// <summary>The next consumer to complete after a dispatch; used by <see cref="TopicQueue"/> under its lock.</summary>
    internal LocalConsumer? NextToComplete { get; set; }

    internal TopicQueue TopicQueue => _topic;

    /// <summary>
    /// Waits for the next message of the topic and holds it. A topic that does not exist yet is waited for.
    /// </summary>
    /// <exception cref="InvalidOperationException">The consumer already holds a message, or another receive is waiting.</exception>
    /// <exception cref="ObjectDisposedException">The consumer or its engine was disposed, also while waiting.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled before a message came.</exception>
    /// <exception cref="MiniQueueStoreException">The message's body could not be read back; the consumer holds it, so dispose or settle it.</exception>
    public ValueTask<Delivery> ReceiveAsync(CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<Delivery>(cancellationToken);
        }

        return _engine.HasRoom ? ReceiveNow(cancellationToken) : ReceiveWhenRoomAsync(cancellationToken);
    }

    private async ValueTask<Delivery> ReceiveWhenRoomAsync(CancellationToken cancellationToken)
    {
        await _engine.WaitForRoomAsync(cancellationToken).ConfigureAwait(false);
        return await ReceiveNow(cancellationToken).ConfigureAwait(false);
    }

    private ValueTask<Delivery> ReceiveNow(CancellationToken cancellationToken)
    {
        MessageEntry entry;
        CancellationToken lease;
        lock (_topic.SyncRoot)
        {
            ObjectDisposedException.ThrowIf(_isDisposed, typeof(MiniQueueConsumer));
            if (_isHolding)
            {
                throw new InvalidOperationException("The consumer already holds a message; settle it (ACK, NACK, BACK or DACK) before receiving the next.");
            }

            // The second test catches a wait that was ended but whose caller has not been told yet.
            if (_isWaiting || (_wait > 0 && _source.GetStatus(_source.Version) == ValueTaskSourceStatus.Pending))
            {
                throw new InvalidOperationException("A receive is already waiting on this consumer.");
            }

            if (!_topic.TryTakeLocked(out entry))
            {
                _source.Reset();
                _isWaiting = true;
                _topic.AddWaiterLocked(this, ++_wait);
                return WaitForDeliveryAsync(_source.Version, cancellationToken);
            }

            _topic.HoldLocked(this, entry);
            lease = LeaseTokenLocked;
        }

        return ToDeliveryAsync(entry, lease);
    }

    /// <summary>Holds the next message if one is ready now, without waiting, not even for a disk read.</summary>
    /// <returns>
    /// Whether a message was ready (and the store had room to log its delivery). A durable engine keeps the bodies of
    /// long queues on disk only: when the next message's body must be read, this holds nothing and returns false, and
    /// the read starts, so that a later call finds the body at hand (<see cref="ReceiveAsync"/> waits for it instead).
    /// </returns>
    public bool TryReceive(out Delivery delivery)
    {
        MessageEntry entry;
        ReadOnlyMemory<byte>? readAhead;
        CancellationToken lease;
        delivery = default;
        if (!_engine.HasRoom)
        {
            return false;
        }

        lock (_topic.SyncRoot)
        {
            ObjectDisposedException.ThrowIf(_isDisposed, typeof(MiniQueueConsumer));
            if (_isHolding || _isWaiting)
            {
                throw new InvalidOperationException("The consumer already holds a message or is waiting for one.");
            }

            if (!_topic.TryTakeAtHandLocked(out entry, out readAhead))
            {
                return false;
            }

            _topic.HoldLocked(this, entry);
            lease = LeaseTokenLocked;
        }

        if (readAhead is { } body)
        {
            delivery = new Delivery(body, entry.DackCount, entry.Id) { LeaseExpired = lease };
            return true;
        }

        // The body is in memory: this completes at once.
        var pending = ToDeliveryAsync(entry, lease);
        Debug.Assert(pending.IsCompletedSuccessfully, "TryTakeAtHandLocked takes only messages whose body is at hand.");
        delivery = pending.Result;
        return true;
    }

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<Delivery> WaitForDeliveryAsync(short version, CancellationToken cancellationToken)
    {
        if (cancellationToken.CanBeCanceled)
        {
            _cancellation = cancellationToken.UnsafeRegister(s_cancelWait, this);
        }

        try
        {
            await new ValueTask<bool>(_source, version).ConfigureAwait(false);
        }
        finally
        {
            await _cancellation.DisposeAsync().ConfigureAwait(false);
            _cancellation = default;
        }

        MessageEntry entry;
        CancellationToken lease;
        lock (_topic.SyncRoot)
        {
            ObjectDisposedException.ThrowIf(!_isHolding, typeof(MiniQueueConsumer));
            entry = _held;
            lease = LeaseTokenLocked;
        }

        return await ToDeliveryAsync(entry, lease).ConfigureAwait(false);
    }

    /// <summary>The held message as a delivery: its body from memory, or read back from the store.</summary>
    private ValueTask<Delivery> ToDeliveryAsync(MessageEntry entry, CancellationToken lease)
    {
        var delivery = _topic.ToDeliveryAsync(entry);
        if (delivery.IsCompletedSuccessfully)
        {
            return lease.CanBeCanceled ? ValueTask.FromResult(delivery.Result with { LeaseExpired = lease }) : delivery;
        }

        return ReadAgainIfMovedAsync(delivery, entry, lease);
    }

    /// <summary>
    /// Compaction may copy the held message's body forward and free its old place while the read is in flight; then
    /// the read fails and is made again at the new place.
    /// </summary>
    private async ValueTask<Delivery> ReadAgainIfMovedAsync(ValueTask<Delivery> delivery, MessageEntry entry, CancellationToken lease)
    {
        while (true)
        {
            try
            {
                return await delivery.ConfigureAwait(false) with { LeaseExpired = lease };
            }
            catch (MiniQueueStoreException)
            {
                MessageEntry current;
                lock (_topic.SyncRoot)
                {
                    if (!_isHolding || _held.Id != entry.Id || _held.Address == entry.Address)
                    {
                        throw;
                    }

                    current = _held;
                }

                entry = current;
                delivery = _topic.ToDeliveryAsync(entry);
            }
        }
    }

    /// <summary>Done: removes the held message for good.</summary>
    /// <exception cref="InvalidOperationException">The consumer holds no message.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while the store had no room to log the ACK; the message is still held.</exception>
    public ValueTask AckAsync(CancellationToken cancellationToken = default) => SettleAsync(Settlement.Ack, TimeSpan.Zero, cancellationToken);

    /// <summary>Returns the held message to the front of the topic; a consumer already waiting gets it at once.</summary>
    /// <exception cref="InvalidOperationException">The consumer holds no message.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while the store had no room; the message is still held.</exception>
    public ValueTask NackAsync(CancellationToken cancellationToken = default) => SettleAsync(Settlement.Nack, TimeSpan.Zero, cancellationToken);

    /// <summary>Returns the held message to the back of the topic.</summary>
    /// <exception cref="InvalidOperationException">The consumer holds no message.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while the store had no room; the message is still held.</exception>
    public ValueTask BackAsync(CancellationToken cancellationToken = default) => SettleAsync(Settlement.Back, TimeSpan.Zero, cancellationToken);

    /// <summary>
    /// Delays the held message by <paramref name="delay"/> and counts the delay in its dackCount. When it comes due it
    /// returns ahead of the FIFO messages (after NACKed ones). A delay of zero or less makes it due at once.
    /// </summary>
    /// <exception cref="InvalidOperationException">The consumer holds no message.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while the store had no room; the message is still held.</exception>
    public ValueTask DackAsync(TimeSpan delay, CancellationToken cancellationToken = default) => SettleAsync(Settlement.Dack, delay, cancellationToken);

    /// <summary>
    /// TOUCH: renews the lease on the held message, so that it stays held for another full lease from now (see
    /// <see cref="MiniQueueOptions.Lease"/>). On a topic without a lease it only checks that a message is held.
    /// </summary>
    /// <exception cref="InvalidOperationException">The consumer holds no message (or its lease passed already).</exception>
    /// <exception cref="ObjectDisposedException">The consumer was disposed.</exception>
    public ValueTask TouchAsync(CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        lock (_topic.SyncRoot)
        {
            ObjectDisposedException.ThrowIf(_isDisposed, typeof(MiniQueueConsumer));
            if (!_isHolding)
            {
                throw NotHolding("TOUCH");
            }

            _topic.TouchLocked(this);
        }

        return ValueTask.CompletedTask;
    }

    private ValueTask SettleAsync(Settlement settlement, TimeSpan delay, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled(cancellationToken);
        }

        if (!_engine.HasRoom)
        {
            return SettleWhenRoomAsync(settlement, delay, cancellationToken);
        }

        Settle(settlement, delay);
        return ValueTask.CompletedTask;
    }

    private async ValueTask SettleWhenRoomAsync(Settlement settlement, TimeSpan delay, CancellationToken cancellationToken)
    {
        await _engine.WaitForRoomAsync(cancellationToken).ConfigureAwait(false);
        Settle(settlement, delay);
    }

    private void Settle(Settlement settlement, TimeSpan delay)
    {
        LocalConsumer? toComplete = null;
        lock (_topic.SyncRoot)
        {
            var entry = TakeHeldLocked(settlement);
            switch (settlement)
            {
                case Settlement.Ack:
                    _topic.AckLocked(entry);
                    break;
                case Settlement.Nack:
                    _topic.NackLocked(entry, ref toComplete);
                    break;
                case Settlement.Back:
                    _topic.BackLocked(entry, ref toComplete);
                    break;
                default:
                    _topic.DackLocked(entry, delay, ref toComplete);
                    break;
            }
        }

        TopicQueue.CompleteAll(toComplete);
        _engine.Metrics.Settled(_topic.Name, settlement);
    }

    /// <summary>
    /// Ends the consumer: a waiting <see cref="ReceiveAsync"/> fails with <see cref="ObjectDisposedException"/> and the
    /// held message returns to the front of the topic.
    /// </summary>
    public ValueTask DisposeAsync() => _engine.HasRoom ? DisposeNow() : DisposeWhenRoomAsync();

    private async ValueTask DisposeWhenRoomAsync()
    {
        await _engine.WaitForRoomAsync().ConfigureAwait(false);
        await DisposeNow().ConfigureAwait(false);
    }

    private ValueTask DisposeNow()
    {
        LocalConsumer? toComplete = null;
        bool endWait;
        bool forget;
        bool returned;
        lock (_topic.SyncRoot)
        {
            if (_isDisposed)
            {
                return ValueTask.CompletedTask;
            }

            _isDisposed = true;
            endWait = _isWaiting;
            if (endWait)
            {
                _isWaiting = false;
                _topic.RemoveWaiterLocked();
            }

            returned = _isHolding;
            if (_isHolding)
            {
                _isHolding = false;
                _topic.NackLocked(_held, ref toComplete);
                _held = default;
                _lease = null;
            }

            forget = _topic.RemoveConsumerLocked(this);
        }

        TopicQueue.CompleteAll(toComplete);
        if (returned)
        {
            _engine.Metrics.Settled(_topic.Name, Settlement.Nack);
        }

        if (endWait)
        {
            _source.SetException(new ObjectDisposedException(nameof(MiniQueueConsumer), "The consumer was disposed while it waited for a message."));
        }

        if (forget)
        {
            _engine.Forget(_topic);
        }

        return ValueTask.CompletedTask;
    }

    internal bool IsWaitingFor(long wait) => _isWaiting && _wait == wait;

    /// <summary>Whether the consumer holds a message; read under the topic's lock.</summary>
    internal bool IsHoldingLocked => _isHolding;

    /// <summary>The held message; read under the topic's lock.</summary>
    internal MessageEntry HeldLocked => _held;

    /// <summary>The held message's body moved in the log (a checkpoint copied it forward).</summary>
    internal void ReplaceHeldLocked(MessageEntry entry) => _held = entry;

    /// <summary>The held message was lost with a failed commit; the consumer holds nothing now.</summary>
    internal void DropHeldLocked()
    {
        _isHolding = false;
        _held = default;
    }

    internal void HoldLocked(MessageEntry entry)
    {
        _isWaiting = false;
        _isHolding = true;
        _leaseLapsed = false;
        _held = entry;
        _lease = _topic.Policy.LeaseTicks > 0 ? new CancellationTokenSource() : null;
    }

    /// <summary>
    /// The lease on the held message: when it passes (UTC ticks) and the topic's sequence number of its start; set by the
    /// topic under its lock. Only the topic's entry with this exact key may end the lease.
    /// </summary>
    internal DueKey LeaseLocked { get; set; }

    /// <summary>The token that is cancelled when the lease on the held message passes (none without a lease).</summary>
    private CancellationToken LeaseTokenLocked => _lease?.Token ?? CancellationToken.None;

    /// <summary>
    /// The lease on the held message passed: the consumer lets go of it (the topic returns it to the front). Returns the
    /// source of the delivery's lease token, to be cancelled outside the lock.
    /// </summary>
    internal MessageEntry LapseLocked(out CancellationTokenSource? lease)
    {
        var entry = _held;
        _isHolding = false;
        _held = default;
        _leaseLapsed = true;
        lease = _lease;
        _lease = null;
        return entry;
    }

    internal void CompleteWait() => _source.SetResult(true);

    private void EndWait(Exception error)
    {
        lock (_topic.SyncRoot)
        {
            if (!_isWaiting)
            {
                return;
            }

            _isWaiting = false;
            _topic.RemoveWaiterLocked();
        }

        _source.SetException(error);
    }

    private MessageEntry TakeHeldLocked(Settlement settlement)
    {
        ObjectDisposedException.ThrowIf(_isDisposed, typeof(MiniQueueConsumer));
        if (!_isHolding)
        {
            throw NotHolding(settlement.ToString().ToUpperInvariant());
        }

        var entry = _held;
        _isHolding = false;
        _held = default;
        _lease = null;
        return entry;
    }

    private InvalidOperationException NotHolding(string command) => new(_leaseLapsed
        ? $"The consumer holds no message to {command}: the lease on the message it held passed, and the message went back to the front of its topic."
        : $"The consumer holds no message to {command}.");

    /// <summary>A reusable wait, one at a time; its continuations run on the thread pool, not on whoever completes it.</summary>
    private sealed class WaitSignal : IValueTaskSource<bool>
    {
        private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };

        public short Version => _core.Version;

        public void Reset() => _core.Reset();

        public void SetResult(bool result) => _core.SetResult(result);

        public void SetException(Exception error) => _core.SetException(error);

        public bool GetResult(short token) => _core.GetResult(token);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);
    }
}

/// <summary>The ways a consumer settles the message it holds.</summary>
internal enum Settlement
{
    Ack,
    Nack,
    Back,
    Dack,
}
