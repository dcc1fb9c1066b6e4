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
internal interface ILogStore : IAsyncDisposable
{
    /// <summary>
    /// Whether <see cref="ReadAsync"/> can return a record's bytes later, so the engine need not keep
    /// message bodies in memory.
    /// </summary>
    bool CanRead { get; }

    /// <summary>
    /// The size of the units the store reclaims space in (whole segments below a truncation point), or 0 when it does
    /// not reclaim space (nothing is kept, or everything is kept).
    /// </summary>
    long SegmentSize { get; }

    /// <summary>
    /// The size of the store's pages: records never span two, and while the disk is short of space the store can give
    /// back the part of a segment below a page boundary. 0 when it does not reclaim space.
    /// </summary>
    long PageSize { get; }

    /// <summary>
    /// The largest record the store takes, in bytes; 0 when there is no limit. A message body that does not fit one
    /// record is written as parts (see <c>MessageBodies</c>).
    /// </summary>
    int RecordLimit { get; }

    /// <summary>How much of the store's address space a record of <paramref name="serializedLength"/> bytes takes.</summary>
    long FootprintOf(int serializedLength);

    /// <summary>The address of the oldest record not truncated away.</summary>
    long BeginAddress { get; }

    /// <summary>The address the next record will get.</summary>
    long TailAddress { get; }

    /// <summary>
    /// Whether the store stopped taking records after a device failure; <see cref="TryRecoverAsync"/> brings it back.
    /// </summary>
    bool IsFaulted { get; }

    /// <summary>
    /// Whether the store can take records now without blocking. The engine appends under its topic locks, so before
    /// taking one it waits for room (<see cref="WaitForRoomAsync"/>) when there is none.
    /// </summary>
    bool HasRoom { get; }

    /// <summary>
    /// Whether a publish record of <paramref name="footprint"/> bytes would take the store's disk under its reserve, so
    /// that the engine must refuse it. Records of other kinds are always taken: they let consumers drain a full store.
    /// </summary>
    bool LacksSpaceFor(long footprint);

    /// <summary>Whether publishes are refused now for lack of disk space.</summary>
    bool IsLowOnSpace { get; }

    /// <summary>Measures the disk again (when due); returns whether publishes are refused for lack of space.</summary>
    bool RefreshSpace();

    /// <summary>Whether maintenance (copying bodies forward, checkpoints) may write <paramref name="bytes"/> now.</summary>
    bool CanSpend(long bytes);

    /// <summary>Completes when <see cref="HasRoom"/> holds again.</summary>
    ValueTask WaitForRoomAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Holds back commits while the caller appends many records at once (a checkpoint), so the log's write buffer can
    /// fill and drain without a commit waiting for room in it. Dispose the result to let commits go on.
    /// </summary>
    ValueTask<IDisposable> HoldCommitsAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Appends a record and returns its address. It is durable once <see cref="IsCommitted"/> says so; the store commits
    /// it soon without being asked.
    /// </summary>
    long Append(LogRecord record);

    /// <summary>
    /// Appends a publish record and returns its address. <paramref name="durable"/> completes once the record is on
    /// stable storage, or fails if the store failed before it was: it is never confused with a record that the store,
    /// reopened after a failure, writes at the same address.
    /// </summary>
    long AppendPublish(LogRecord record, out ValueTask durable);

    /// <summary>Whether the record at <paramref name="address"/> is on stable storage.</summary>
    bool IsCommitted(long address);

    /// <summary>Completes once the record at <paramref name="address"/> (and every record before it) is on stable storage.</summary>
    ValueTask WaitForCommitAsync(long address, CancellationToken cancellationToken = default);

    /// <summary>Reads back the bytes of the record at <paramref name="address"/>, which is about <paramref name="lengthHint"/> bytes long (0: unknown).</summary>
    ValueTask<ReadOnlyMemory<byte>> ReadAsync(long address, int lengthHint = 0, CancellationToken cancellationToken = default);

    /// <summary>
    /// Reads several committed records with one read of the log: for each (address, length) of <paramref name="records"/>,
    /// in address order, the record's bytes if the store finds an intact record of that length there (its own checks
    /// pass), else null. A shortcut for reading many records at once; a store that cannot do it answers null for each.
    /// </summary>
    /// <exception cref="IOException">The log's file could not be read.</exception>
    byte[]?[] ReadCommittedRecords(IReadOnlyList<(long Address, int Length)> records) => new byte[]?[records.Count];

    /// <summary>Every committed record that has not been truncated away, in append order.</summary>
    IAsyncEnumerable<StoredRecord> ReplayAsync(CancellationToken cancellationToken = default);

    /// <summary>Lets the store discard every record before <paramref name="address"/>, a segment boundary.</summary>
    void TruncateUntil(long address);

    /// <summary>
    /// After a fault, reopens the store at its last durable state. Records appended after that state are gone, so the
    /// caller must write again whatever state they carried. Returns false while the device still fails.
    /// </summary>
    ValueTask<bool> TryRecoverAsync(CancellationToken cancellationToken = default);
}

/// <summary>A record as the store kept it.</summary>
internal readonly record struct StoredRecord(long Address, ReadOnlyMemory<byte> Data);
