using System.Runtime.CompilerServices;
using MiniQueue.Storage;

namespace MiniQueue.Tests.Storage;

/// <summary>
/// A test store: a log kept in memory (records, commits, replay, reads and truncation), with no disk.
/// It lets the engine's logging and recovery be exercised quickly and deterministically: reopen an engine
/// over the same store to restart it, or take <see cref="CrashCopy"/> to lose what was not committed.
/// By default every append is committed at once; with <c>autoCommit: false</c> records wait for <see cref="Commit"/>.
/// </summary>
internal sealed class InMemoryLogStore : ILogStore
{
    private readonly Lock _lock = new();
    private readonly List<byte[]> _records = [];
    private readonly List<(long Address, TaskCompletionSource Done)> _commitWaiters = [];
    private readonly bool _autoCommit;
    private long _firstAddress;
    private long _committedUntil;

    /// <param name="autoCommit">Whether every append is committed at once.</param>
    /// <param name="segmentRecords">
    /// When positive, the store reclaims space in segments of this many records (each record takes one address), so the
    /// engine's space reclamation can be exercised; 0 keeps everything.
    /// </param>
    /// <param name="recordLimit">When positive, the largest record it takes (bodies beyond it are written in parts).</param>
    public InMemoryLogStore(bool autoCommit = true, long segmentRecords = 0, int recordLimit = 0)
    {
        _autoCommit = autoCommit;
        SegmentSize = segmentRecords;
        RecordLimit = recordLimit;
    }

    private InMemoryLogStore(bool autoCommit, long segmentRecords, int recordLimit, long firstAddress, IEnumerable<byte[]> records)
        : this(autoCommit, segmentRecords, recordLimit)
    {
        _firstAddress = firstAddress;
        _records.AddRange(records);
        _committedUntil = TailAddress;
    }

    public bool CanRead => true;

    public bool HasRoom => true;

    public bool IsLowOnSpace => false;

    public long PageSize => SegmentSize;

    public int RecordLimit { get; }

    public bool LacksSpaceFor(long footprint) => false;

    public bool RefreshSpace() => false;

    public bool CanSpend(long bytes) => true;

    public ValueTask WaitForRoomAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask<IDisposable> HoldCommitsAsync(CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<IDisposable>(NoHold.Instance);

    public long SegmentSize { get; }

    /// <summary>How many records the store holds now.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _records.Count;
            }
        }
    }

    public long FootprintOf(int serializedLength) => 1;

    public bool IsFaulted => false;

    public long AppendPublish(LogRecord record, out ValueTask durable)
    {
        var address = Append(record);
        durable = IsCommitted(address) ? ValueTask.CompletedTask : WaitForCommitAsync(address);
        if (FailedWaits.Contains(address))
        {
            durable = FailAfterAsync(durable, FailedWaitsAfter);
        }

        return address;
    }

    /// <summary>
    /// Addresses of publish records whose wait fails once they are committed, as when a later commit fails before the
    /// store completed the waits of an earlier one (the record is durable; its publisher hears of a failure).
    /// </summary>
    public HashSet<long> FailedWaits { get; } = [];

    /// <summary>
    /// What a failing wait of <see cref="FailedWaits"/> appended from now on waits for after its commit, before it fails:
    /// a test that needs another publish's completion to run first orders them with it (the thread pool does not).
    /// </summary>
    public Task FailedWaitsAfter { get; set; } = Task.CompletedTask;

    private static async ValueTask FailAfterAsync(ValueTask committed, Task after)
    {
        await committed;
        await after;
        await Task.Yield();
        throw new MiniQueueStoreException("A later commit failed before this wait was completed.");
    }

    public ValueTask<bool> TryRecoverAsync(CancellationToken cancellationToken = default) => ValueTask.FromResult(true);

    /// <summary>The address the next record will get.</summary>
    public long TailAddress
    {
        get
        {
            lock (_lock)
            {
                return _firstAddress + _records.Count;
            }
        }
    }

    /// <summary>The address of the oldest record not truncated away.</summary>
    public long BeginAddress
    {
        get
        {
            lock (_lock)
            {
                return _firstAddress;
            }
        }
    }

    public long Append(LogRecord record)
    {
        var bytes = record.ToArray();
        lock (_lock)
        {
            var address = _firstAddress + _records.Count;
            _records.Add(bytes);
            if (_autoCommit)
            {
                _committedUntil = address + 1;
            }

            return address;
        }
    }

    public bool IsCommitted(long address)
    {
        lock (_lock)
        {
            return address < _committedUntil;
        }
    }

    public ValueTask WaitForCommitAsync(long address, CancellationToken cancellationToken = default)
    {
        TaskCompletionSource done;
        lock (_lock)
        {
            if (address < _committedUntil)
            {
                return ValueTask.CompletedTask;
            }

            done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _commitWaiters.Add((address, done));
        }

        return new ValueTask(done.Task.WaitAsync(cancellationToken));
    }

    /// <summary>Makes every record appended so far durable.</summary>
    public void Commit()
    {
        List<TaskCompletionSource> done = [];
        lock (_lock)
        {
            _committedUntil = _firstAddress + _records.Count;
            _commitWaiters.RemoveAll(waiter =>
            {
                if (waiter.Address >= _committedUntil)
                {
                    return false;
                }

                done.Add(waiter.Done);
                return true;
            });
        }

        done.ForEach(waiter => waiter.SetResult());
    }

    /// <summary>What a restart after a crash would find: the committed records only.</summary>
    public InMemoryLogStore CrashCopy()
    {
        lock (_lock)
        {
            var committed = (int)(_committedUntil - _firstAddress);
            return new InMemoryLogStore(_autoCommit, SegmentSize, RecordLimit, _firstAddress, _records.Take(committed));
        }
    }

    public ValueTask<ReadOnlyMemory<byte>> ReadAsync(long address, int lengthHint = 0, CancellationToken cancellationToken = default)
    {
        lock (_lock)
        {
            var index = address - _firstAddress;
            if (index < 0 || index >= _records.Count)
            {
                throw new MiniQueueStoreException($"No record at address {address}: the log holds {_firstAddress}..{_firstAddress + _records.Count - 1}.");
            }

            return ValueTask.FromResult<ReadOnlyMemory<byte>>(_records[(int)index]);
        }
    }

    public async IAsyncEnumerable<StoredRecord> ReplayAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await Task.Yield();
        StoredRecord[] snapshot;
        lock (_lock)
        {
            var committed = (int)(_committedUntil - _firstAddress);
            snapshot = new StoredRecord[committed];
            for (var i = 0; i < committed; i++)
            {
                snapshot[i] = new StoredRecord(_firstAddress + i, _records[i]);
            }
        }

        foreach (var record in snapshot)
        {
            cancellationToken.ThrowIfCancellationRequested();
            yield return record;
        }
    }

    public void TruncateUntil(long address)
    {
        lock (_lock)
        {
            var count = (int)Math.Clamp(address - _firstAddress, 0, _committedUntil - _firstAddress);
            _records.RemoveRange(0, count);
            _firstAddress += count;
        }
    }

    public ValueTask DisposeAsync()
    {
        Commit();
        return ValueTask.CompletedTask;
    }
}

/// <summary>A commit hold of a store that has nothing to hold.</summary>
internal sealed class NoHold : IDisposable
{
    public static readonly NoHold Instance = new();

    public void Dispose()
    {
    }
}
