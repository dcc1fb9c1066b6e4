using System.Collections.Concurrent;
using System.Threading.Tasks.Sources;

namespace MiniQueue.Storage;

/// <summary>
/// Publishers waiting for their records to be durable. The committer completes the waits its commit covered right
/// after it, or fails them all when the log fails. Each wait is a pooled <see cref="IValueTaskSource"/>, so waiting
/// allocates nothing per publish (FasterLog's own commit wait allocated two state machines each). The continuations of
/// the waits one commit covered run one after the other in one thread-pool work item, not on the committer.
/// </summary>
internal sealed class CommitWaiters
{
    private readonly Lock _lock = new();
    private readonly ConcurrentQueue<Waiter> _pool = new();
    private List<Waiter> _waiting = [];

    /// <summary>Lists of completed waits, reused (one is in use per commit that covered a wait).</summary>
    private readonly ConcurrentQueue<List<Waiter>> _batches = new();

    /// <summary>How many publishers wait now.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _waiting.Count;
            }
        }
    }

    /// <summary>A wait for the record at <paramref name="address"/>, written by opening <paramref name="generation"/> of the log.</summary>
    public ValueTask Add(long address, int generation)
    {
        if (!_pool.TryDequeue(out var waiter))
        {
            waiter = new Waiter(this);
        }

        waiter.Address = address;
        waiter.Generation = generation;
        var version = waiter.Version;
        lock (_lock)
        {
            _waiting.Add(waiter);
        }

        return new ValueTask(waiter, version);
    }

    /// <summary>
    /// Completes the waits for records of <paramref name="generation"/> before <paramref name="committedUntil"/>: one
    /// thread-pool work item runs their continuations one after the other (not one work item each, and not on the
    /// committer, which goes on to the next commit).
    /// </summary>
    public void Complete(long committedUntil, int generation)
    {
        List<Waiter>? done = null;
        lock (_lock)
        {
            var kept = 0;
            for (var i = 0; i < _waiting.Count; i++)
            {
                var waiter = _waiting[i];
                if (waiter.Generation == generation && waiter.Address < committedUntil)
                {
                    done ??= _batches.TryDequeue(out var reused) ? reused : [];
                    done.Add(waiter);
                }
                else
                {
                    _waiting[kept++] = waiter;
                }
            }

            _waiting.RemoveRange(kept, _waiting.Count - kept);
        }

        if (done is not null)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static state => state.Owner.Succeed(state.Done), (Owner: this, Done: done), preferLocal: false);
        }
    }

    private void Succeed(List<Waiter> done)
    {
        foreach (var waiter in done)
        {
            waiter.Succeed();
        }

        done.Clear();
        _batches.Enqueue(done);
    }

    /// <summary>Fails every wait: the log failed, and none of their records will be durable in it.</summary>
    public void FailAll(Exception exception)
    {
        List<Waiter> failed;
        lock (_lock)
        {
            if (_waiting.Count == 0)
            {
                return;
            }

            failed = _waiting;
            _waiting = [];
        }

        var error = exception as MiniQueueStoreException ?? new MiniQueueStoreException($"The log could not commit: {exception.Message}", exception);
        ThreadPool.UnsafeQueueUserWorkItem(
            static state =>
            {
                foreach (var waiter in state.Failed)
                {
                    waiter.Fail(state.Error);
                }
            },
            (Failed: failed, Error: error),
            preferLocal: false);
    }

    private void Return(Waiter waiter) => _pool.Enqueue(waiter);

    private sealed class Waiter(CommitWaiters owner) : IValueTaskSource
    {
        private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = false };

        public long Address;
        public int Generation;

        public short Version => _core.Version;

        public void Succeed() => _core.SetResult(true);

        public void Fail(Exception exception) => _core.SetException(exception);

        public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _core.OnCompleted(continuation, state, token, flags);

        public void GetResult(short token)
        {
            try
            {
                _core.GetResult(token);
            }
            finally
            {
                _core.Reset();
                owner.Return(this);
            }
        }
    }
}
