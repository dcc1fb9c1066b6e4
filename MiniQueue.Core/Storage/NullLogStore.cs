namespace MiniQueue.Storage;

/// <summary>
/// The store of an in-memory engine (no <see cref="MiniQueueOptions.DataDirectory"/>): the engine's own memory is
/// the only copy of the queue and nothing outlives the process, so it writes nothing, every append is durable at
/// once and there is nothing to replay. The engine keeps message bodies in memory because <see cref="CanRead"/> is false.
/// </summary>
internal sealed class NullLogStore : ILogStore
{
    public static readonly NullLogStore Instance = new();

    private NullLogStore()
    {
    }

    public bool CanRead => false;

    public bool HasRoom => true;

    public bool IsLowOnSpace => false;

    public long PageSize => 0;

    public int RecordLimit => 0;

    public bool LacksSpaceFor(long footprint) => false;

    public bool RefreshSpace() => false;

    public bool CanSpend(long bytes) => true;

    public ValueTask WaitForRoomAsync(CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask<IDisposable> HoldCommitsAsync(CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<IDisposable>(NoHold.Instance);

    public long SegmentSize => 0;

    public long FootprintOf(int serializedLength) => 0;

    public long BeginAddress => 0;

    public long TailAddress => 0;

    public bool IsFaulted => false;

    public ValueTask<bool> TryRecoverAsync(CancellationToken cancellationToken = default) => ValueTask.FromResult(true);

    public long Append(LogRecord record) => 0;

    public long AppendPublish(LogRecord record, out ValueTask durable)
    {
        durable = ValueTask.CompletedTask;
        return 0;
    }

    public bool IsCommitted(long address) => true;

    public ValueTask WaitForCommitAsync(long address, CancellationToken cancellationToken = default) => ValueTask.CompletedTask;

    public ValueTask<ReadOnlyMemory<byte>> ReadAsync(long address, int lengthHint = 0, CancellationToken cancellationToken = default) =>
        throw new NotSupportedException("An in-memory engine keeps message bodies itself.");

    public IAsyncEnumerable<StoredRecord> ReplayAsync(CancellationToken cancellationToken = default) => AsyncEnumerable.Empty<StoredRecord>();

    public void TruncateUntil(long address)
    {
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}

/// <summary>A commit hold of a store that has nothing to hold.</summary>
internal sealed class NoHold : IDisposable
{
    public static readonly NoHold Instance = new();

    public void Dispose()
    {
    }
}
