using MiniQueue.Backend;
using MiniQueue.Engine;

namespace MiniQueue.PostgreSql;

/// <summary>
/// A consumer of one topic in shared mode. Its topic's <see cref="TopicTaker"/> takes the next message for it (with
/// those of the process's other waiting consumers); it holds it under a hold id that its settle names.
/// </summary>
internal sealed class PostgreSqlConsumer : IQueueConsumer
{
    private readonly PostgreSqlBackend _backend;
    private readonly TopicPolicy _policy;
    private readonly Lock _lock = new();
    private readonly CancellationTokenSource _disposing = new();
    private Held? _held;
    private bool _receiving;
    private bool _leaseLapsed;
    private bool _disposed;

    public PostgreSqlConsumer(PostgreSqlBackend backend, string topic)
    {
        _backend = backend;
        Topic = topic;
        _policy = backend.PolicyOf(topic);
        backend.Signals.Watch(topic);
    }

    public string Topic { get; }

    public bool IsHoldingMessage
    {
        get
        {
            lock (_lock)
            {
                return _held is not null;
            }
        }
    }

    public async ValueTask<Delivery> ReceiveAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, typeof(MiniQueueConsumer));
            if (_held is not null)
            {
                throw new InvalidOperationException("The consumer already holds a message; settle it (ACK, NACK, BACK or DACK) before receiving the next.");
            }

            if (_receiving)
            {
                throw new InvalidOperationException("A receive is already waiting on this consumer.");
            }

            _receiving = true;
        }

        try
        {
            using var both = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposing.Token);
            return await _backend.TakerOf(Topic).ReceiveAsync(this, both.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (_disposing.IsCancellationRequested)
        {
            throw new ObjectDisposedException(nameof(MiniQueueConsumer), "The consumer was disposed while it waited for a message.");
        }
        finally
        {
            lock (_lock)
            {
                _receiving = false;
            }
        }
    }

    /// <summary>
    /// Holds the next message if one is ready now: one round trip to the database, made synchronously (shared mode has no
    /// message at hand without one). False when none is ready, and while the database is away.
    /// </summary>
    public bool TryReceive(out Delivery delivery)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, typeof(MiniQueueConsumer));
            if (_held is not null || _receiving)
            {
                throw new InvalidOperationException("The consumer already holds a message or is waiting for one.");
            }

            _receiving = true;
        }

        try
        {
            var taken = _backend.TakerOf(Topic).TryTake(this);
            delivery = taken ?? default;
            return taken is not null;
        }
        finally
        {
            lock (_lock)
            {
                _receiving = false;
            }
        }
    }

    /// <summary>
    /// The taker hands this consumer a message it took for it: the consumer holds it, unless it was disposed meanwhile
    /// (then null, and the taker returns the message).
    /// </summary>
    internal Delivery? TryHold(long id, Guid hold, byte[] body, int dackCount)
    {
        CancellationTokenSource? lease = null;
        ITimer? timer = null;
        if (_policy.LeaseTicks > 0)
        {
            lease = new CancellationTokenSource();
            timer = _backend.Time.CreateTimer(static state => ((PostgreSqlConsumer)state!).OnLeaseTimer(), this, TimeSpan.FromTicks(_policy.LeaseTicks), Timeout.InfiniteTimeSpan);
        }

        lock (_lock)
        {
            if (_disposed)
            {
                timer?.Dispose();
                return null;
            }

            _held = new Held(id, hold, lease, timer);
            _leaseLapsed = false;
        }

        return new Delivery(body, dackCount, id) { LeaseExpired = lease?.Token ?? CancellationToken.None };
    }

    /// <summary>
    /// A message handed to this consumer whose receive was cancelled at that moment: the consumer lets go of it (the
    /// taker gives it to another consumer or returns it).
    /// </summary>
    internal void Unhold(Guid hold)
    {
        Held? held;
        lock (_lock)
        {
            held = _held?.Hold == hold ? _held : null;
            if (held is not null)
            {
                _held = null;
            }
        }

        held?.Timer?.Dispose();
    }

    /// <summary>
    /// The lease on the held message passed: the consumer lets go of it at once (a later settle fails, its delivery's
    /// token is cancelled) and the message returns to the front. Should that statement fail, the heartbeat of any process
    /// returns it once its lease is a process lease overdue.
    /// </summary>
    private void OnLeaseTimer()
    {
        Held? held;
        lock (_lock)
        {
            held = _held;
            if (held is null)
            {
                return;
            }

            _held = null;
            _leaseLapsed = true;
        }

        held.Timer?.Dispose();
        _backend.Metrics.LeaseExpired(Topic);
        PostgreSqlLog.LeaseExpired(_backend.Logger, Topic, held.Id);
        try
        {
            held.Lease?.Cancel();
        }
        catch (AggregateException exception)
        {
            // A watcher's callback failed; the timer's thread must go on.
            PostgreSqlLog.LeaseCallbackFailed(_backend.Logger, Topic, exception);
        }

        _ = _backend.ReturnAsync(Topic, held.Id, held.Hold);
    }

    public ValueTask AckAsync(CancellationToken cancellationToken) => SettleAsync(Settlement.Ack, cancellationToken);

    public ValueTask NackAsync(CancellationToken cancellationToken) => SettleAsync(Settlement.Nack, cancellationToken);

    public ValueTask BackAsync(CancellationToken cancellationToken) => SettleAsync(Settlement.Back, cancellationToken);

    public ValueTask DackAsync(TimeSpan delay, CancellationToken cancellationToken) => SettleAsync(Settlement.Dack, cancellationToken, delay);

    private async ValueTask SettleAsync(Settlement settlement, CancellationToken cancellationToken, TimeSpan delay = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var command = settlement.ToString().ToUpperInvariant();
        Held held;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, typeof(MiniQueueConsumer));
            held = _held ?? throw NotHolding(command);
        }

        bool settled;
        if (settlement == Settlement.Ack)
        {
            // The common settle does not wait for the database: the next take of this process carries it (see
            // PostgreSqlBackend.Ack). Whether the hold was still on is this consumer's to know (its lease timer).
            _backend.Ack(held.Id, held.Hold);
            settled = true;
        }
        else
        {
            try
            {
                settled = await _backend.Settles.SettleAsync(
                    settlement switch { Settlement.Nack => SettleKind.Nack, Settlement.Back => SettleKind.Back, _ => SettleKind.Dack },
                    Topic, held.Id, held.Hold, delay.TotalSeconds).ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is not (OperationCanceledException or ObjectDisposedException))
            {
                throw _backend.Unreachable(exception, $"The {command} of message {held.Id} failed; the consumer still holds it");
            }

            _backend.Released(held.Id);
        }

        lock (_lock)
        {
            if (ReferenceEquals(_held, held))
            {
                _held = null;
            }
        }

        held.Timer?.Dispose();
        if (!settled)
        {
            // Its lease passed, or this process was taken for dead: the message went back to the front.
            _leaseLapsed = true;
            throw NotHolding(command);
        }

        _backend.Metrics.Settled(Topic, settlement);
    }

    public async ValueTask TouchAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        Held held;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, typeof(MiniQueueConsumer));
            held = _held ?? throw NotHolding("TOUCH");
        }

        if (_policy.LeaseTicks <= 0)
        {
            return;
        }

        try
        {
            var lease = TimeSpan.FromTicks(_policy.LeaseTicks).TotalSeconds;
            if (!await _backend.Settles.SettleAsync(SettleKind.Touch, Topic, held.Id, held.Hold, lease).ConfigureAwait(false))
            {
                throw NotHolding("TOUCH");
            }
        }
        catch (Exception exception) when (exception is not (OperationCanceledException or InvalidOperationException))
        {
            throw _backend.Unreachable(exception, $"The TOUCH of message {held.Id} failed");
        }

        held.Timer?.Change(TimeSpan.FromTicks(_policy.LeaseTicks), Timeout.InfiniteTimeSpan);
    }

    private InvalidOperationException NotHolding(string command) => new(_leaseLapsed
        ? $"The consumer holds no message to {command}: the lease on the message it held passed, and the message went back to the front of its topic."
        : $"The consumer holds no message to {command}.");

    /// <summary>Ends the consumer: a waiting receive fails with <see cref="ObjectDisposedException"/>; the held message returns to the front.</summary>
    public async ValueTask DisposeAsync()
    {
        Held? held;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            held = _held;
            _held = null;
        }

        await _disposing.CancelAsync().ConfigureAwait(false);
        if (held is not null)
        {
            held.Timer?.Dispose();

            // If the database is away, the reconcile returns it once it is back (or another process, should this one die).
            await _backend.ReturnAsync(Topic, held.Id, held.Hold).ConfigureAwait(false);
            _backend.Metrics.Settled(Topic, Settlement.Nack);
        }

        _backend.Signals.Unwatch(Topic);
        _backend.Remove(this);
    }

    /// <summary>The message a consumer holds: its id, the hold its settle names, and its lease (when the topic has one).</summary>
    private sealed record Held(long Id, Guid Hold, CancellationTokenSource? Lease, ITimer? Timer);
}
