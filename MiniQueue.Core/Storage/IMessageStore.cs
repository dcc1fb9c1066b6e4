namespace MiniQueue.Storage;

/// <summary>
/// The engine's store seam: an append-only log of <see cref="LogRecord"/>s.
/// The engine keeps the queue's state in memory and writes every state change here;
/// on open it rebuilds that state by replaying what the store kept.
/// </summary>
/// <remarks>
/// Implementations throw <see cref="MiniQueueStoreException"/> when they cannot take or read a record.
/// Addresses increase in append order; a commit makes a prefix of the log durable.
/// </remarks>
internal interface IMessageStore : IAsyncDisposable
{
    /// <summary>
    /// Whether <see cref="ReadAsync"/> can return a record's bytes later, so the engine need not keep
    /// message bodies in memory.
    /// </summary>
    bool CanRead { get; }

    /// <summary>Appends a record and returns its address. It is durable once <see cref="IsCommitted"/> says so.</summary>
    long Append(LogRecord record);

    /// <summary>Whether the record at <paramref name="address"/> is on stable storage.</summary>
    bool IsCommitted(long address);

    /// <summary>Completes once the record at <paramref name="address"/> (and every record before it) is on stable storage.</summary>
    ValueTask WaitForCommitAsync(long address, CancellationToken cancellationToken = default);

    /// <summary>Reads back the bytes of the record at <paramref name="address"/>.</summary>
    ValueTask<ReadOnlyMemory<byte>> ReadAsync(long address, CancellationToken cancellationToken = default);

    /// <summary>Every committed record that has not been truncated away, in append order.</summary>
    IAsyncEnumerable<StoredRecord> ReplayAsync(CancellationToken cancellationToken = default);

    /// <summary>Lets the store discard every record before <paramref name="address"/>.</summary>
    void TruncateUntil(long address);
}

/// <summary>A record as the store kept it.</summary>
internal readonly record struct StoredRecord(long Address, ReadOnlyMemory<byte> Data);
