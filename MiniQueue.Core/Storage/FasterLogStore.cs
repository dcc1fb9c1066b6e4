using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using FASTER.core;
using Microsoft.Extensions.Logging;

namespace MiniQueue.Storage;

/// <summary>
/// The durable store: a FasterLog write-ahead log in a data directory.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Records carry FASTER's per-entry checksums; commits use FastCommitMode (a commit record in the log itself,
/// with the commit metadata file written every 1,000 commits and whenever truncation moved the log's start), so a
/// commit costs one write. Recovery scans forward from the last metadata to the last intact commit record.</item>
/// <item>One committer task keeps one commit in flight: every append asks for a commit, and all appends that arrive
/// during a commit share the next one (group commit).</item>
/// <item>A failed commit poisons a FasterLog for good; the store then refuses records (<see cref="IsFaulted"/>) until
/// <see cref="TryRecoverAsync"/> reopens the log at its last good commit.</item>
/// <item>FastCommitMode recovery stops silently at the first damaged record and calls what came before the whole log.
/// So the store keeps its own lower bound of the committed log, <c>committed</c>, rewritten at most every 100 ms after a
/// commit; a log that recovers to less than that is damaged, and opening it is refused rather than losing its end.</item>
/// <item>FasterLog (2.6.5) can deadlock when its write buffer is full while a commit is issued in FastCommitMode: the
/// commit spins for room for its commit record while holding the lock that the completion of earlier commits needs.
/// So the store keeps room in the buffer: <see cref="HasRoom"/> is false once the unflushed part of the log passes
/// all but two pages of the buffer, the engine waits for room before it appends, and the committer waits for room
/// before it commits (and not at all while a checkpoint holds commits back).</item>
/// <item>FASTER is no longer developed, so nothing outside this file touches it.</item>
/// </list>
/// </remarks>
internal sealed class FasterLogStore : ILogStore
{
    /// <summary>FasterLog's header per record with per-entry checksums: an 8-byte checksum and a 4-byte length.</summary>
    private const int RecordHeaderBytes = 12;

    /// <summary>Write the commit metadata file only every this many commits (recovery scans forward from it).</summary>
    private const int MetadataEveryCommits = 1000;

    /// <summary>
    /// The default reserve of free disk space: 32 MiB, or four log pages if that is more. Short of space the log gives
    /// space back by pages, so a few pages let consumers drain (their records) and commits go on; the rest is room for
    /// compaction to copy a message forward and checkpoint its topic.
    /// </summary>
    public static long DefaultReserveBytes(int pageBytes) => Math.Max(4L * pageBytes, 32L * 1024 * 1024);

    private const int DefaultPageBytes = 1024 * 1024;
    private static readonly TimeSpan s_watermarkEvery = TimeSpan.FromMilliseconds(100);
    private const long DefaultSegmentBytes = 16L * 1024 * 1024;

    private readonly string _directory;
    private readonly StoreManifest _manifest;
    private readonly long _memoryBytes;
    private readonly MiniQueueCommitMode _commitMode;
    private readonly TimeSpan _commitInterval;
    private readonly Func<string, IDevice> _createDevice;
    private readonly DataFiles _files;
    private readonly DiskSpace _space;
    private readonly ILogger _logger;
    private readonly Channel<bool> _commitRequests = WakeUps.Create();

    private readonly Task _committer;
    private readonly Watermark _watermark;

    /// <summary>
    /// Reads in flight at once. File reads on Linux block a thread-pool thread each, so many consumers reading bodies
    /// back at the same time would starve the pool that everything else (HTTP included) runs on.
    /// </summary>
    private readonly SemaphoreSlim _readSlots = new(Math.Max(2, Environment.ProcessorCount * 2));

    /// <summary>
    /// Commits in flight at once. A commit is a synchronous write of the log's tail (plus, now and then, a metadata file);
    /// while one is on its way to the disk the next can already carry the appends made meanwhile, so publishers wait for
    /// one write, not for the end of the one before theirs and then their own.
    /// </summary>
    private const int CommitsInFlight = 2;

    /// <summary>One slot per commit in flight; a caller of <see cref="HoldCommitsAsync"/> takes them all.</summary>
    private readonly SemaphoreSlim _commitSlots = new(CommitsInFlight, CommitsInFlight);

    /// <summary>Lets one caller of <see cref="HoldCommitsAsync"/> at a time gather the slots (two gathering at once could deadlock).</summary>
    private readonly SemaphoreSlim _holders = new(1, 1);

    /// <summary>Serialises what follows a commit (the watermark file), as commits may end at the same time.</summary>
    private readonly Lock _afterCommit = new();
    private long _commits;

    /// <summary>Publishers waiting for their commit (Fsync mode).</summary>
    private readonly CommitWaiters _waiters = new();

    /// <summary>
    /// The longest a record nobody waits for (a delivery or a settle) stays out of a commit: consumers' records share
    /// commits instead of asking for one each. It is also the most a crash can undo of their ACKs.
    /// </summary>
    private static readonly TimeSpan s_lazyCommitDelay = TimeSpan.FromMilliseconds(5);

    private readonly Timer _lazyCommit;
    private int _lazyCommitArmed;
    private readonly long _roomBytes;
    private readonly Histogram<double>? _commitDuration;
    private readonly bool _fillAhead;
    private Instance _instance;
    private Exception? _fault;

    /// <summary>Which opening of the log is current; failures reported by an earlier one (closed since) are ignored.</summary>
    private int _generation;

    /// <summary>1 while a commit has been asked for and the committer has not started it; saves a channel write per append.</summary>
    private int _commitRequested;
    private int _users;
    private int _disposed;

    private FasterLogStore(
        string directory, StoreManifest manifest, long memoryBytes, MiniQueueOptions options, Func<string, IDevice> createDevice, DataFiles files,
        ILogger logger, Watermark watermark, Meter? meter)
    {
        _commitDuration = meter?.CreateHistogram<double>(
            "commit.duration", "s", "How long one commit of the log (a group of appends) takes to reach the disk.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1] });
        _directory = directory;
        _watermark = watermark;
        _manifest = manifest;
        _memoryBytes = memoryBytes;
        _commitMode = options.CommitMode;
        _commitInterval = options.CommitInterval;
        _fillAhead = options.FillLogSegmentsAhead;
        _createDevice = createDevice;
        _files = files;
        _logger = logger;
        _instance = OpenInstance();
        _space = new DiskSpace(
            directory, options.DiskReserveBytes ?? DefaultReserveBytes(manifest.PageBytes), options.MaxDiskBytes,
            tail: () => _instance.Log.TailAddress, written: () => _instance.Log.FlushedUntilAddress, logger);
        _instance.Device.PrepareTail(_instance.Log.TailAddress);
        _roomBytes = Math.Max(manifest.PageBytes, memoryBytes - (2L * manifest.PageBytes));
        _lazyCommit = new Timer(static state => ((FasterLogStore)state!).OnLazyCommitDue(), this, Timeout.Infinite, Timeout.Infinite);
        _committer = Task.Run(CommitLoopAsync);
    }

    public bool CanRead => true;

    public long SegmentSize => _manifest.SegmentBytes;

    public long PageSize => _manifest.PageBytes;

    /// <summary>A record and FASTER's header fit in a page, with room to spare.</summary>
    public int RecordLimit => _manifest.PageBytes - RecordHeaderBytes - 64;

    public long BeginAddress => _instance.Log.BeginAddress;

    public long TailAddress => _instance.Log.TailAddress;

    /// <summary>The address up to which the log is durable.</summary>
    public long CommittedUntilAddress => _instance.Log.CommittedUntilAddress;

    public bool IsFaulted => Volatile.Read(ref _fault) is not null;

    /// <summary>The address up to which the log is written to the device (committed or not).</summary>
    public long FlushedUntilAddress => _instance.Log.FlushedUntilAddress;

    /// <summary>The page size the data directory uses.</summary>
    public int PageBytes => _manifest.PageBytes;

    public bool IsLowOnSpace => _space.IsLow;

    /// <summary>The room the data directory has left (measured now), in bytes.</summary>
    public long AvailableBytes => _space.AvailableBytes();

    /// <summary>The room publishes leave to the store's own writes, in bytes.</summary>
    public long ReserveBytes => _space.ReserveBytes;

    /// <summary>Segments the log let go of that wait for durable commit metadata before they are deleted.</summary>
    internal int HeldSegments => _instance.Device.HeldSegments;

    public bool LacksSpaceFor(long footprint) => _space.Refuses(footprint);

    public bool RefreshSpace() => _space.Refresh(0);

    public bool CanSpend(long bytes) => _space.CanSpend(bytes);

    /// <summary>How many commits the committer has made (each one shared by every append before it).</summary>
    public long Commits => Interlocked.Read(ref _commits);

    /// <summary>
    /// Opens (creating or recovering) the log in the options' data directory, refusing settings that differ from the
    /// directory's manifest.
    /// </summary>
    public static FasterLogStore Open(
        MiniQueueOptions options, ILogger logger, Meter? meter = null, Func<string, IDevice>? createDevice = null, DataFiles? files = null)
    {
        var directory = Path.GetFullPath(options.DataDirectory ?? throw new ArgumentException("A durable store needs a DataDirectory.", nameof(options)));
        Directory.CreateDirectory(directory);
        var manifest = ResolveManifest(directory, options, files ?? DataFiles.Default);
        var memoryBytes = options.LogMemoryBytes ?? 4L * manifest.PageBytes;
        var reserve = options.DiskReserveBytes ?? DefaultReserveBytes(manifest.PageBytes);
        if (options.MaxDiskBytes is { } cap && cap <= reserve)
        {
            throw new MiniQueueStoreException(
                $"MaxDiskBytes ({cap}) must be more than the disk reserve ({reserve} bytes{(options.DiskReserveBytes is null ? ", the default" : "")}), " +
                "or no publish would ever be taken.");
        }

        if (memoryBytes < 2L * manifest.PageBytes)
        {
            throw new MiniQueueStoreException(
                $"LogMemoryBytes ({memoryBytes}) must hold at least two of this data directory's {manifest.PageBytes}-byte pages.");
        }

        createDevice ??= static path => Devices.CreateLogDevice(path, preallocateFile: false, deleteOnClose: false);
        files ??= DataFiles.Default;
        var watermark = new Watermark(directory);
        try
        {
            return new FasterLogStore(directory, manifest, memoryBytes, options, createDevice, files, logger, watermark, meter);
        }
        catch
        {
            watermark.Dispose();
            throw;
        }
    }

    private static StoreManifest ResolveManifest(string directory, MiniQueueOptions options, DataFiles files)
    {
        var existing = StoreManifest.TryRead(directory);
        if (existing is null)
        {
            if (Directory.EnumerateFiles(directory, "wal.log*").Any())
            {
                throw new MiniQueueStoreException(
                    $"{directory} holds a MiniQueue log but no {StoreManifest.FileName}; without it the log's settings are unknown, so it is not opened.");
            }

            var created = new StoreManifest(
                StoreManifest.CurrentFormat,
                options.LogPageBytes ?? DefaultPageBytes,
                options.LogSegmentBytes ?? Math.Max(DefaultSegmentBytes, options.LogPageBytes ?? DefaultPageBytes),
                StoreManifest.PerEntryChecksum,
                FastCommit: true);
            created.Write(directory, files);
            return created;
        }

        var problems = new List<string>();
        if (existing.Format is < StoreManifest.OldestReadableFormat or > StoreManifest.CurrentFormat)
        {
            problems.Add($"format {existing.Format} (this version reads formats {StoreManifest.OldestReadableFormat} to {StoreManifest.CurrentFormat})");
        }

        if (options.LogPageBytes is { } page && page != existing.PageBytes)
        {
            problems.Add($"LogPageBytes {page} (the directory has {existing.PageBytes})");
        }

        if (options.LogSegmentBytes is { } segment && segment != existing.SegmentBytes)
        {
            problems.Add($"LogSegmentBytes {segment} (the directory has {existing.SegmentBytes})");
        }

        if (existing.Checksum != StoreManifest.PerEntryChecksum || !existing.FastCommit)
        {
            problems.Add($"checksum {existing.Checksum} and fast commit {existing.FastCommit} (this version uses {StoreManifest.PerEntryChecksum} and fast commit)");
        }

        if (!int.IsPow2(existing.PageBytes) || !long.IsPow2(existing.SegmentBytes) || existing.SegmentBytes < existing.PageBytes)
        {
            problems.Add($"page {existing.PageBytes} and segment {existing.SegmentBytes} bytes, which are not a valid layout");
        }

        if (problems.Count > 0)
        {
            throw new MiniQueueStoreException(
                $"The data directory {directory} was created with other log settings than these: {string.Join("; ", problems)}. " +
                "Opening it with them could silently lose data, so it is refused. Use the directory's settings or a new directory.");
        }

        if (existing.Format < StoreManifest.CurrentFormat)
        {
            // Newer formats only add record kinds: the log is read as it is, and from now on it may hold the new kinds.
            existing = existing with { Format = StoreManifest.CurrentFormat };
            existing.Write(directory, files);
        }

        return existing;
    }

    public long FootprintOf(int serializedLength) => RecordHeaderBytes + ((serializedLength + 3) & ~3);

    public bool HasRoom
    {
        get
        {
            // A faulted log flushes nothing more, and takes nothing more either: callers need not wait to hear that.
            var log = _instance.Log;
            return log.TailAddress - log.FlushedUntilAddress <= _roomBytes || IsFaulted;
        }
    }

    public ValueTask WaitForRoomAsync(CancellationToken cancellationToken = default) =>
        HasRoom ? ValueTask.CompletedTask : PollForRoomAsync(cancellationToken);

    private async ValueTask PollForRoomAsync(CancellationToken cancellationToken)
    {
        // Full pages are being flushed; room comes back as they land. A millisecond is the timer's resolution.
        while (!HasRoom && !IsFaulted)
        {
            await Task.Delay(1, cancellationToken).ConfigureAwait(false);
        }
    }

    public async ValueTask<IDisposable> HoldCommitsAsync(CancellationToken cancellationToken = default)
    {
        await _holders.WaitAsync(cancellationToken).ConfigureAwait(false);
        var taken = 0;
        try
        {
            for (; taken < CommitsInFlight; taken++)
            {
                await _commitSlots.WaitAsync(cancellationToken).ConfigureAwait(false);
            }

            return new CommitHold(this);
        }
        catch
        {
            if (taken > 0)
            {
                _commitSlots.Release(taken);
            }

            _holders.Release();
            throw;
        }
    }

    public long Append(LogRecord record)
    {
        Interlocked.Increment(ref _users);
        try
        {
            ThrowIfFaulted();
            var address = _instance.Log.Enqueue(new Entry(record));

            // Nobody waits for this record (a delivery, a settle, part of a checkpoint): it goes into the next commit a
            // publish asks for, or into one a few milliseconds from now. Who needs it durable waits for it and asks.
            RequestLazyCommit();
            return address;
        }
        catch (Exception exception) when (exception is not MiniQueueStoreException)
        {
            throw new MiniQueueStoreException($"The log did not take a {record.Kind} record: {exception.Message}", exception);
        }
        finally
        {
            Interlocked.Decrement(ref _users);
        }
    }

    public bool IsCommitted(long address) =>
        _commitMode == MiniQueueCommitMode.Interval ? !IsFaulted : address < _instance.Log.CommittedUntilAddress;

    public long AppendPublish(LogRecord record, out ValueTask durable)
    {
        Interlocked.Increment(ref _users);
        try
        {
            // The wait is tied to this opening of the log, taken while a reopening waits for appends to leave: a reopened
            // log may write other records at the same address, which must not make this one look durable.
            ThrowIfFaulted();
            var log = _instance.Log;
            var generation = Volatile.Read(ref _generation);
            var address = log.Enqueue(new Entry(record));

            // The wait is registered before the commit is asked for, so the commit that covers the record completes it.
            durable = _commitMode == MiniQueueCommitMode.Interval ? ValueTask.CompletedTask : _waiters.Add(address, generation);
            RequestCommit();
            return address;
        }
        catch (Exception exception) when (exception is not MiniQueueStoreException)
        {
            throw new MiniQueueStoreException($"The log did not take a {record.Kind} record: {exception.Message}", exception);
        }
        finally
        {
            Interlocked.Decrement(ref _users);
        }
    }

    public ValueTask WaitForCommitAsync(long address, CancellationToken cancellationToken = default)
    {
        if (IsCommitted(address))
        {
            return ValueTask.CompletedTask;
        }

        ThrowIfFaulted();
        RequestCommit();
        return WaitForCommitOfAsync(_instance.Log, Volatile.Read(ref _generation), address, cancellationToken);
    }

    private async ValueTask WaitForCommitOfAsync(FasterLog log, int generation, long address, CancellationToken cancellationToken)
    {
        try
        {
            await log.WaitForCommitAsync(address + 1, token: cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            // The committer notes the failure too, but this waiter may hear of it first (unless the log was reopened since).
            // FASTER reports every failed write with the same code: the device's own account of it says why (a full disk).
            var cause = generation == Volatile.Read(ref _generation) ? NoteFault(exception) : exception;
            throw new MiniQueueStoreException($"The log could not commit: {cause.Message}", cause);
        }
    }

    public async ValueTask<ReadOnlyMemory<byte>> ReadAsync(long address, int lengthHint = 0, CancellationToken cancellationToken = default)
    {
        await _readSlots.WaitAsync(cancellationToken).ConfigureAwait(false);
        Interlocked.Increment(ref _users);
        try
        {
            var log = _instance.Log;
            var (bytes, length) = await log.ReadAsync(address, lengthHint, cancellationToken).ConfigureAwait(false);
            return bytes is null
                ? throw new MiniQueueStoreException($"No committed record at address {address} (the log holds {log.BeginAddress}..{log.CommittedUntilAddress}).")
                : bytes.AsMemory(0, length);
        }
        catch (Exception exception) when (exception is not (MiniQueueStoreException or OperationCanceledException))
        {
            throw new MiniQueueStoreException($"The record at address {address} could not be read: {exception.Message}", exception);
        }
        finally
        {
            Interlocked.Decrement(ref _users);
            _readSlots.Release();
        }
    }

    public byte[]?[] ReadCommittedRecords(IReadOnlyList<(long Address, int Length)> records)
    {
        var found = new byte[]?[records.Count];
        if (records.Count == 0)
        {
            return found;
        }

        var first = records[0].Address;
        var span = (int)(records[^1].Address - first + RecordHeaderBytes + records[^1].Length);
        var buffer = ArrayPool<byte>.Shared.Rent(span);
        try
        {
            var bytes = buffer.AsSpan(0, ReadCommittedBytes(first, buffer.AsSpan(0, span)));
            for (var i = 0; i < records.Count; i++)
            {
                var (address, length) = records[i];
                var offset = address - first;
                if (offset < 0 || offset + RecordHeaderBytes + length > bytes.Length)
                {
                    continue;
                }

                // FasterLog's per-entry header: an 8-byte checksum of what follows it, then the 4-byte length.
                var record = bytes.Slice((int)offset, RecordHeaderBytes + length);
                if (BinaryPrimitives.ReadInt32LittleEndian(record[8..]) == length
                    && BinaryPrimitives.ReadUInt64LittleEndian(record) == XorChecksum(record[8..]))
                {
                    found[i] = record[RecordHeaderBytes..].ToArray();
                }
            }

            return found;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>FasterLog's per-entry checksum: the XOR of the bytes as little-endian 8-byte words, then of the bytes left over.</summary>
    internal static ulong XorChecksum(ReadOnlySpan<byte> bytes)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(bytes);
        ulong result = 0;
        foreach (var word in words)
        {
            result ^= BitConverter.IsLittleEndian ? word : BinaryPrimitives.ReverseEndianness(word);
        }

        foreach (var rest in bytes[(words.Length * sizeof(ulong))..])
        {
            result ^= rest;
        }

        return result;
    }

    /// <summary>
    /// The log's bytes as stored, from <paramref name="address"/> up to the committed end and within one segment, into
    /// <paramref name="destination"/>; how many it read.
    /// </summary>
    private int ReadCommittedBytes(long address, Span<byte> destination)
    {
        if (IsFaulted)
        {
            return 0;
        }

        Interlocked.Increment(ref _users);
        try
        {
            var log = _instance.Log;
            var segment = address / _manifest.SegmentBytes;
            var segmentStart = segment * _manifest.SegmentBytes;
            var until = Math.Min(Math.Min(address + destination.Length, log.CommittedUntilAddress), segmentStart + _manifest.SegmentBytes);
            if (address < log.BeginAddress || until <= address)
            {
                return 0;
            }

            // A log address is the same offset in its segment's file; FasterLog writes committed pages there.
            using var file = File.OpenHandle(
                Path.Combine(_directory, $"wal.log.{segment.ToString(CultureInfo.InvariantCulture)}"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var wanted = (int)(until - address);
            var read = 0;
            while (read < wanted)
            {
                var count = RandomAccess.Read(file, destination[read..wanted], address - segmentStart + read);
                if (count == 0)
                {
                    break;
                }

                read += count;
            }

            return read;
        }
        finally
        {
            Interlocked.Decrement(ref _users);
        }
    }

    public async IAsyncEnumerable<StoredRecord> ReplayAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var log = _instance.Log;
        using var iterator = log.Scan(log.BeginAddress, log.CommittedUntilAddress);
        while (true)
        {
            byte[] entry;
            int length;
            long address;
            bool found;
            try
            {
                found = iterator.GetNext(out entry, out length, out address);
            }
            catch (FasterException exception)
            {
                throw new MiniQueueStoreException(
                    $"The log in {_directory} is damaged at address {iterator.NextAddress}, inside its committed part: {exception.Message} " +
                    "MiniQueue does not start from a partial log.", exception);
            }

            if (!found)
            {
                if (!await iterator.WaitAsync(cancellationToken).ConfigureAwait(false))
                {
                    yield break;
                }

                continue;
            }

            yield return new StoredRecord(address, entry.AsMemory(0, length));
        }
    }

    public void TruncateUntil(long address)
    {
        _instance.Log.TruncateUntilPageStart(address);

        // Whole segments below the new start are deleted at the next commit.
        RequestCommit();
    }

    public async ValueTask<bool> TryRecoverAsync(CancellationToken cancellationToken = default)
    {
        if (!IsFaulted)
        {
            return true;
        }

        // Appends and reads see the fault and stay out; wait for the ones already inside.
        var spin = new SpinWait();
        while (Volatile.Read(ref _users) != 0)
        {
            spin.SpinOnce();
        }

        // Publishers still waiting on the failed log hear that their records will not be durable.
        _waiters.FailAll(Volatile.Read(ref _fault) ?? new IOException("The log failed."));

        Instance reopened;
        try
        {
            reopened = OpenInstance();
        }
        catch (Exception exception)
        {
            StoreLog.ReopenFailed(_logger, _directory, exception);
            return false;
        }

        // Prove the device takes writes again before accepting records: commit a record that replay ignores
        // (the end of a checkpoint that never began).
        try
        {
            reopened.Log.Enqueue(new Entry(LogRecord.CheckpointEnd(0)));
            await reopened.Log.CommitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            StoreLog.ReopenFailed(_logger, _directory, exception);
            reopened.Dispose();
            return false;
        }

        var old = _instance;
        _instance = reopened;
        old.Dispose();
        Volatile.Write(ref _fault, null);
        StoreLog.Recovered(_logger, _directory, reopened.Log.CommittedUntilAddress);
        return true;
    }

    /// <summary>The bytes the data directory's files take on disk.</summary>
    public long DiskBytes() =>
        new DirectoryInfo(_directory).EnumerateFiles("*", SearchOption.AllDirectories).Sum(static file => file.Length);

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _lazyCommit.DisposeAsync().ConfigureAwait(false);
        _commitRequests.Writer.TryComplete();
        await _committer.ConfigureAwait(false);

        // The commits still in flight end before the last one; the hold is never let go (the store is closing).
        _ = await HoldCommitsAsync().ConfigureAwait(false);

        if (!IsFaulted)
        {
            try
            {
                await _instance.Log.CommitAsync().ConfigureAwait(false);
                _waiters.Complete(_instance.Log.CommittedUntilAddress, Volatile.Read(ref _generation));
                WriteWatermark(_instance.Log.CommittedUntilAddress);
            }
            catch (Exception exception)
            {
                StoreLog.FinalCommitFailed(_logger, _directory, exception);
            }
        }

        _waiters.FailAll(new ObjectDisposedException(nameof(FasterLogStore), "The store was closed before the record was durable."));

        _instance.Dispose();
        _watermark.Dispose();
        _readSlots.Dispose();
        _commitSlots.Dispose();
        _holders.Dispose();
    }

    /// <summary>Asks for a commit within <see cref="s_lazyCommitDelay"/>, unless one is asked for before.</summary>
    private void RequestLazyCommit()
    {
        if (Volatile.Read(ref _lazyCommitArmed) == 0 && Interlocked.Exchange(ref _lazyCommitArmed, 1) == 0)
        {
            _lazyCommit.Change(s_lazyCommitDelay, Timeout.InfiniteTimeSpan);
        }
    }

    private void OnLazyCommitDue()
    {
        Volatile.Write(ref _lazyCommitArmed, 0);
        if (Volatile.Read(ref _disposed) == 0)
        {
            RequestCommit();
        }
    }

    private void RequestCommit()
    {
        if (Volatile.Read(ref _commitRequested) == 0 && Interlocked.Exchange(ref _commitRequested, 1) == 0)
        {
            _commitRequests.Writer.TryWrite(true);
        }
    }

    private async Task CommitLoopAsync()
    {
        while (await _commitRequests.Reader.WaitToReadAsync().ConfigureAwait(false))
        {
            _commitRequests.Reader.TryRead(out _);

            // Appends from here on ask again; this commit covers the ones before.
            Volatile.Write(ref _commitRequested, 0);
            if (_commitMode == MiniQueueCommitMode.Interval)
            {
                // Let appends gather for at most one interval; their publishers were answered already.
                await Task.Delay(_commitInterval).ConfigureAwait(false);
            }

            if (Volatile.Read(ref _fault) is { } fault)
            {
                // Nothing will commit until the log is reopened (and not the records these publishers wait for).
                _waiters.FailAll(fault);
                continue;
            }

            await _commitSlots.WaitAsync().ConfigureAwait(false);
            _ = CommitOnceAsync();
        }
    }

    /// <summary>One commit of everything appended so far; holds a commit slot, which it gives back when done.</summary>
    private async Task CommitOnceAsync()
    {
        var log = _instance.Log;
        var generation = Volatile.Read(ref _generation);
        try
        {
            await PollForRoomAsync(CancellationToken.None).ConfigureAwait(false);
            var started = Stopwatch.GetTimestamp();
            await log.CommitAsync().ConfigureAwait(false);
            _commitDuration?.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
            Interlocked.Increment(ref _commits);
            _waiters.Complete(log.CommittedUntilAddress, generation);
            if (_watermark.Age >= s_watermarkEvery)
            {
                lock (_afterCommit)
                {
                    if (_watermark.Age >= s_watermarkEvery)
                    {
                        WriteWatermark(log.CommittedUntilAddress);
                    }
                }
            }

            if (_instance.Commits.SpareLags && !IsFaulted)
            {
                // The log's start moved: the new commit file says so, but the spare one does not yet, and segments are
                // let go only once both do. Commit once more (a record replay ignores) so that another file is written.
                log.Enqueue(new Entry(LogRecord.CheckpointEnd(0)));
                RequestCommit();
            }
        }
        catch (Exception exception)
        {
            // The waiters hear the device's account of the failure if it gave one (FASTER's own says only "error code").
            var fault = NoteFault(exception);
            StoreLog.CommitFailed(_logger, _directory, exception);
            _waiters.FailAll(fault);
        }
        finally
        {
            _commitSlots.Release();
        }
    }

    private sealed class CommitHold(FasterLogStore store) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                store._commitSlots.Release(CommitsInFlight);
                store._holders.Release();
            }
        }
    }

    /// <summary>Notes <paramref name="exception"/> as the log's fault unless one is noted already; returns the one that stands.</summary>
    private Exception NoteFault(Exception exception) => Interlocked.CompareExchange(ref _fault, exception, null) ?? exception;

    private void ThrowIfFaulted()
    {
        if (Volatile.Read(ref _fault) is { } fault)
        {
            throw new MiniQueueStoreException($"The log is not taking records since a write failed: {fault.Message}", fault);
        }

        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
    }

    /// <summary>A record as FasterLog serialises it, straight into the log's buffer.</summary>
    private readonly struct Entry(LogRecord record) : ILogEnqueueEntry
    {
        public int SerializedLength => record.SerializedLength;

        public void SerializeTo(Span<byte> dest) => record.WriteTo(dest);
    }

    /// <summary>Opens the log (again), as the current generation, and checks it against the watermark.</summary>
    private Instance OpenInstance()
    {
        var generation = Interlocked.Increment(ref _generation);
        var instance = Instance.Open(
            _directory, _manifest, _memoryBytes, _createDevice, _files,
            onWriteFailed: errorCode => OnWriteFailed(generation, errorCode),
            onMetadataWriteFailed: exception => StoreLog.CommitMetadataWriteFailed(_logger, _directory, exception),
            hasRoomAhead: _fillAhead ? bytes => _space is not null && _space.HasRoomAhead(bytes) : null);
        try
        {
            _watermark.ThrowIfAbove(instance.Log.CommittedUntilAddress, _directory);
            return instance;
        }
        catch
        {
            instance.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A write of the log failed: FasterLog has stopped for good (it flushes nothing past a failed range), so the store
    /// refuses records at once, until <see cref="TryRecoverAsync"/> reopens the log.
    /// </summary>
    private void OnWriteFailed(int generation, uint errorCode)
    {
        if (generation != Volatile.Read(ref _generation))
        {
            return;
        }

        // FASTER reports every error as the same code; the free space tells a full disk from a failing one.
        long available;
        try
        {
            available = new DriveInfo(_directory).AvailableFreeSpace;
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or ArgumentException)
        {
            available = -1;
        }

        var fault = available >= 0 && available < _manifest.PageBytes
            ? new IOException($"A write to the log in {_directory} failed: the disk is full ({available} bytes available).")
            : new IOException($"A write to the log in {_directory} failed (device error {errorCode}; {available} bytes available).");
        if (Interlocked.CompareExchange(ref _fault, fault, null) is null)
        {
            StoreLog.WriteFailed(_logger, _directory, fault);
        }
    }

    private void WriteWatermark(long committedUntil)
    {
        try
        {
            _watermark.Write(committedUntil);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            // The file keeps its previous bound, which is still a lower bound: nothing is at risk, only the check is older.
            StoreLog.WatermarkWriteFailed(_logger, _directory, exception);
        }
    }

    /// <summary>One open FasterLog with the device and commit manager it owns.</summary>
    private sealed class Instance : IDisposable
    {
        private readonly LogDevice _device;
        private readonly CommitMetadataFiles _commits;

        private Instance(LogDevice device, CommitMetadataFiles commits, FasterLog log)
        {
            _device = device;
            _commits = commits;
            Log = log;
        }

        public FasterLog Log { get; }

        public LogDevice Device => _device;

        public CommitMetadataFiles Commits => _commits;

        public static Instance Open(
            string directory, StoreManifest manifest, long memoryBytes, Func<string, IDevice> createDevice, DataFiles files,
            Action<uint> onWriteFailed, Action<Exception> onMetadataWriteFailed, Func<long, bool>? hasRoomAhead = null)
        {
            // FasterLog creates an empty file for a segment it reads that is missing, and reads zeros from it: note which
            // segments exist before it looks.
            var segments = ExistingSegments(directory);
            var path = Path.Combine(directory, "wal.log");
            LogDevice? device = null;
            var commits = new CommitMetadataFiles(directory, files, MetadataEveryCommits, manifest.PageBytes, onMetadataWriteFailed, () => device?.DeleteReleasedSegments());
            device = new LogDevice(path, createDevice(path), files, () => commits.DurableBeginAddress, onWriteFailed, hasRoomAhead);
            FasterLog? log = null;
            try
            {
                log = new FasterLog(new FasterLogSettings
                {
                    LogDevice = device,
                    LogCommitManager = commits,
                    PageSizeBits = int.Log2(manifest.PageBytes),
                    SegmentSizeBits = (int)long.Log2(manifest.SegmentBytes),
                    MemorySizeBits = (int)long.Log2(memoryBytes),
                    LogChecksum = LogChecksumType.PerEntry,
                    FastCommitMode = true,

                    // Recover explicitly: the constructor would swallow a recovery failure and start empty.
                    TryRecoverLatest = false,
                });
                log.Recover();

                // Every segment of the committed log must have been there: a missing one means the log lost a part.
                var bits = (int)long.Log2(manifest.SegmentBytes);
                for (var segment = log.BeginAddress >> bits; log.CommittedUntilAddress > log.BeginAddress && segment <= (log.CommittedUntilAddress - 1) >> bits; segment++)
                {
                    if (segments.GetValueOrDefault((int)segment) <= 0)
                    {
                        throw new MiniQueueStoreException(
                            $"The log in {directory} is damaged: its committed part ({log.BeginAddress}..{log.CommittedUntilAddress}) needs the file " +
                            $"wal.log.{segment}, which is missing or empty. MiniQueue does not start from a partial log.");
                    }
                }

                // Segments below the start that are still there (their deletion was held back when the process stopped)
                // go as soon as the commit metadata lets them.
                foreach (var segment in segments.Keys.Where(segment => ((long)segment + 1) << bits <= log.BeginAddress))
                {
                    device.Hold(segment);
                }

                device.DeleteReleasedSegments();
                return new Instance(device, commits, log);
            }
            catch (Exception exception)
            {
                log?.Dispose();
                commits.Dispose();
                device.Dispose();
                throw exception as MiniQueueStoreException
                    ?? new MiniQueueStoreException($"The log in {directory} could not be recovered: {exception.Message}", exception);
            }
        }

        /// <summary>The log's segment files by number, with their lengths.</summary>
        private static Dictionary<int, long> ExistingSegments(string directory)
        {
            var segments = new Dictionary<int, long>();
            foreach (var file in new DirectoryInfo(directory).EnumerateFiles("wal.log.*"))
            {
                if (int.TryParse(file.Name.AsSpan("wal.log.".Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var segment))
                {
                    try
                    {
                        segments[segment] = file.Length;
                    }
                    catch (FileNotFoundException)
                    {
                        // Deleted since it was listed: a segment the log had let go of.
                    }
                }
            }

            return segments;
        }

        public void Dispose()
        {
            Log.Dispose();
            _commits.Dispose();
            _device.Dispose();
        }
    }
}
