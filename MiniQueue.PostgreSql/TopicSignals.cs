using Microsoft.Extensions.Logging;
using Npgsql;

namespace MiniQueue.PostgreSql;

/// <summary>
/// Wakes this process's waiting consumers when a topic may have a message for them: on a notification from the
/// database (<c>NOTIFY miniqueue, '&lt;topic&gt;'</c>, sent in the transaction of every publish, NACK, BACK, DACK, redrive
/// and lease return, by any process) and on the same changes made here. The one waiter of a topic is its
/// <see cref="TopicTaker"/>; a signal that comes while it is not waiting makes its next wait return at once.
/// </summary>
internal sealed class TopicSignals : IAsyncDisposable
{
    public const string Channel = "miniqueue";

    private readonly NpgsqlDataSource _database;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, TopicWaiters> _topics = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _listen = Task.CompletedTask;

    public TopicSignals(NpgsqlDataSource database, ILogger logger)
    {
        _database = database;
        _logger = logger;
    }

    /// <summary>Whether the listening connection is up (notifications from other processes arrive).</summary>
    public bool IsListening { get; private set; }

    /// <summary>Starts listening; completes once the first LISTEN is in place.</summary>
    public Task StartAsync(CancellationToken cancellationToken)
    {
        _listen = Task.Run(ListenAsync, CancellationToken.None);
        return _listening.Task.WaitAsync(cancellationToken);
    }

    private async Task ListenAsync()
    {
        var retry = TimeSpan.FromMilliseconds(100);
        while (!_stopping.IsCancellationRequested)
        {
            try
            {
                await using var connection = await _database.OpenConnectionAsync(_stopping.Token).ConfigureAwait(false);
                connection.Notification += (_, notification) => Signal(notification.Payload);
                await using (var listen = new NpgsqlCommand($"LISTEN {Channel}", connection))
                {
                    await listen.ExecuteNonQueryAsync(_stopping.Token).ConfigureAwait(false);
                }

                IsListening = true;
                _listening.TrySetResult();
                retry = TimeSpan.FromMilliseconds(100);

                // Whatever changed while nobody listened: every waiter looks again.
                SignalAll();
                while (true)
                {
                    await connection.WaitAsync(_stopping.Token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
            {
                break;
            }
            catch (Exception exception)
            {
                IsListening = false;
                PostgreSqlLog.ListenFailed(_logger, exception);
                try
                {
                    await Task.Delay(retry, _stopping.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }

                retry = TimeSpan.FromTicks(Math.Min(retry.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
            }
        }

        IsListening = false;
    }

    /// <summary>A topic may have a message: wakes its longest-waiting consumer here.</summary>
    public void Signal(string topic)
    {
        TaskCompletionSource? wake = null;
        lock (_lock)
        {
            if (_topics.TryGetValue(topic, out var waiters))
            {
                wake = waiters.Take();
            }
        }

        wake?.TrySetResult();
    }

    private void SignalAll()
    {
        List<TaskCompletionSource> wake = [];
        lock (_lock)
        {
            foreach (var waiters in _topics.Values)
            {
                if (waiters.Take() is { } waiter)
                {
                    wake.Add(waiter);
                }
            }
        }

        foreach (var waiter in wake)
        {
            waiter.TrySetResult();
        }
    }

    /// <summary>A consumer of <paramref name="topic"/> starts watching it (before its first take, so no signal is missed).</summary>
    public void Watch(string topic)
    {
        lock (_lock)
        {
            if (!_topics.TryGetValue(topic, out var waiters))
            {
                _topics[topic] = waiters = new TopicWaiters();
            }

            waiters.Watchers++;
        }
    }

    /// <summary>A consumer stopped watching <paramref name="topic"/>.</summary>
    public void Unwatch(string topic)
    {
        lock (_lock)
        {
            if (_topics.TryGetValue(topic, out var waiters) && --waiters.Watchers == 0)
            {
                _topics.Remove(topic);
            }
        }
    }

    /// <summary>
    /// Waits for a signal on <paramref name="topic"/> (at once if one came since the last wait) or until
    /// <paramref name="due"/> (a delayed message comes due).
    /// </summary>
    public async Task WaitAsync(string topic, DueTime? due, TimeProvider time, CancellationToken cancellationToken)
    {
        TaskCompletionSource wake;
        lock (_lock)
        {
            // Nobody watches the topic any more (its last consumer just went): there is nobody to wake.
            if (!_topics.TryGetValue(topic, out var waiters))
            {
                return;
            }

            if (waiters.Pending)
            {
                waiters.Pending = false;
                return;
            }

            wake = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            waiters.Waiter = wake;
        }

        try
        {
            if (due is { } when)
            {
                await wake.Task.WaitAsync(when.From(time), time, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await wake.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
        catch (TimeoutException)
        {
        }
        finally
        {
            bool woken;
            lock (_lock)
            {
                woken = wake.Task.IsCompleted;
                if (!woken && _topics.TryGetValue(topic, out var waiters) && waiters.Waiter == wake)
                {
                    waiters.Waiter = null;
                }
            }

            if (!woken)
            {
                // Not woken by a signal: nothing to pass on.
                wake.TrySetCanceled(CancellationToken.None);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _listen.ConfigureAwait(false);
        _stopping.Dispose();
    }

    /// <summary>A watched topic: its waiting taker, if it waits, and whether a signal came while it did not.</summary>
    private sealed class TopicWaiters
    {
        public TaskCompletionSource? Waiter { get; set; }

        /// <summary>A signal came while nobody waited: the next wait returns at once.</summary>
        public bool Pending { get; set; }

        public int Watchers { get; set; }

        /// <summary>A signal: the waiter, to be woken (outside the lock); or, when none waits, the next wait returns at once.</summary>
        public TaskCompletionSource? Take()
        {
            var waiter = Waiter;
            Waiter = null;
            Pending = waiter is null;
            return waiter;
        }
    }
}

/// <summary>
/// When to look again for a delayed message: <see cref="In"/> from now by the database's clock, or at
/// <see cref="At"/> by a test's clock (<see cref="MiniQueueOptions.TimeProvider"/>), read again just before waiting.
/// </summary>
internal readonly record struct DueTime(TimeSpan In, DateTimeOffset? At)
{
    public TimeSpan From(TimeProvider time) => At is { } at ? TimeSpan.FromTicks(Math.Max(0, (at - time.GetUtcNow()).Ticks)) : In;
}
