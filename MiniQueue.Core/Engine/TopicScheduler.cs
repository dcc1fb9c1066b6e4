namespace MiniQueue.Engine;

/// <summary>
/// The timers of one topic: when its earliest delayed message comes due, and when the leases on its held messages pass.
/// One timer serves both, armed for the earlier (and at most one period ahead, which bounds the lateness a clock jump
/// can cause). Guarded by the topic's lock; the timer's callback, the topic's, takes that lock and calls
/// <see cref="Fired"/> first.
/// </summary>
internal sealed class TopicScheduler(TimeProvider time, long periodTicks, Action onFire)
{
    private static readonly TimerCallback s_onTimer = static state => ((TopicScheduler)state!)._onFire();

    private readonly Action _onFire = onFire;

    /// <summary>
    /// Consumers by the lease on the message they hold. An entry goes stale when its consumer settles or renews; only the
    /// entry whose key the consumer still has (<see cref="LocalConsumer.LeaseLocked"/>) can end its lease.
    /// </summary>
    private readonly PriorityQueue<LocalConsumer, DueKey> _leases = new();
    private long _leaseSequence;
    private ITimer? _timer;
    private long _firesAt = long.MaxValue;
    private bool _stopped;

    public long Now => time.GetUtcNow().UtcTicks;

    /// <summary>Starts (or renews) the lease on the message <paramref name="consumer"/> holds, for <paramref name="leaseTicks"/> from now.</summary>
    public void StartLease(LocalConsumer consumer, long leaseTicks, long nextDue)
    {
        var now = Now;

        // Leases that pass at the same time lapse in the order they were started (or renewed).
        var key = new DueKey(now + Math.Min(leaseTicks, DateTimeOffset.MaxValue.UtcTicks - now), ++_leaseSequence);
        consumer.LeaseLocked = key;
        _leases.Enqueue(consumer, key);
        Arm(now, nextDue);
    }

    /// <summary>The next consumer whose lease has passed at <paramref name="now"/> and still holds that leased message.</summary>
    public bool TryTakeLapsed(long now, out LocalConsumer consumer)
    {
        while (_leases.TryPeek(out consumer!, out var key) && key.DueTicks <= now)
        {
            _leases.Dequeue();
            if (consumer.IsHoldingLocked && consumer.LeaseLocked == key)
            {
                return true;
            }
        }

        consumer = null!;
        return false;
    }

    /// <summary>The timer went off: it is not armed any more (the callback re-arms it as needed).</summary>
    public void Fired() => _firesAt = long.MaxValue;

    /// <summary>Arms the timer for the earlier of <paramref name="nextDue"/> and the first lease to pass, capped at one period.</summary>
    public void Arm(long now, long nextDue)
    {
        var next = nextDue;
        if (_leases.TryPeek(out _, out var lease))
        {
            next = Math.Min(next, lease.DueTicks);
        }

        if (_stopped || next == long.MaxValue)
        {
            return;
        }

        var firesAt = Math.Min(next, now + periodTicks);
        if (firesAt >= _firesAt)
        {
            return;
        }

        _firesAt = firesAt;

        // Whole milliseconds, rounded up, and never zero: timers must not fire before the due time.
        var milliseconds = Math.Max(1, (firesAt - now + TimeSpan.TicksPerMillisecond - 1) / TimeSpan.TicksPerMillisecond);
        var dueIn = TimeSpan.FromMilliseconds(milliseconds);
        if (_timer is null)
        {
            _timer = time.CreateTimer(s_onTimer, this, dueIn, Timeout.InfiniteTimeSpan);
        }
        else
        {
            _timer.Change(dueIn, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>The topic closed: the timer goes and is not armed again.</summary>
    public void Stop()
    {
        _stopped = true;
        _timer?.Dispose();
        _timer = null;
    }
}
