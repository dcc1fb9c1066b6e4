using FASTER.core;
using Microsoft.Win32.SafeHandles;

namespace MiniQueue.Storage;

/// <summary>
/// The device FasterLog writes its segments through: a real file device (or a test's) inside, with two guards.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>A write that fails is reported at once (<c>onWriteFailed</c>), before FasterLog hears of it. FasterLog 2.6.5
/// poisons itself for good on a failed page flush but says so only through its commit waiters, and it reports every
/// error, ENOSPC or EIO, as the same code.</item>
/// <item>A segment is deleted only once the durable commit metadata starts the log past it
/// (<see cref="CommitMetadataFiles.DurableBeginAddress"/>). FasterLog deletes segments right after it has asked for
/// the metadata to be written, whether or not that write worked; a segment it wanted gone earlier is deleted later, by
/// <see cref="DeleteReleasedSegments"/>, after a metadata write succeeds.</item>
/// <item>Over FASTER's managed file device (its device on Linux), the writes are made here, by two threads of the
/// device's own, each a synchronous positional write to the segment file opened as that device opens it (written
/// through), with FasterLog's completion called on the same thread. The managed device queued every write to the
/// thread pool twice (a task that starts it, and the blocking write .NET makes of an asynchronous file write on Linux),
/// and under load those work items waited behind every request the server had queued: a commit took milliseconds of
/// queueing for a fraction of a millisecond of disk. The writes reach the threads through a <see cref="WriteQueue{T}"/>,
/// whose takers spin before they sleep only while writes come often. Reads still go through the device inside.</item>
/// <item>Once the log is half-way through a segment, the next one is filled with zeros ahead of it, and at open the
/// segment the log's tail is in (<see cref="SegmentFill"/>, while the disk has room for it), so that the log's writes
/// land in blocks the file already has.</item>
/// </list>
/// </remarks>
internal sealed class LogDevice : StorageDeviceBase
{
    /// <summary>Threads that write: two, so that a commit's write can go to the disk while the one before is still on its way.</summary>
    private const int Writers = 2;

    /// <summary>
    /// FASTER's unbuffered flag (FILE_FLAG_NO_BUFFERING). .NET ignores it on Linux: the segments are written through the
    /// page cache, each write on the disk when it returns (<c>O_SYNC</c>). Writing past the page cache (<c>O_DIRECT</c>
    /// through open(2)) was measured and bought nothing here (docs/benchmarks.md, thirteenth round).
    /// </summary>
    private const FileOptions NoBuffering = (FileOptions)0x20000000;

    private readonly IDevice _inner;
    private readonly DataFiles _files;
    private readonly Func<long> _durableBegin;
    private readonly Func<long, bool>? _hasRoom;
    private readonly Action<uint> _onWriteFailed;
    private readonly DeviceIOCompletionCallback _onWritten;
    private readonly SortedSet<int> _held = [];
    private long _punchedUntil;

    /// <summary>Writes waiting for a writer thread; null when the device inside writes.</summary>
    private readonly WriteQueue<PendingWrite>? _writes;
    private readonly Thread[] _writers = [];
    private readonly Dictionary<int, SafeFileHandle> _handles = [];

    /// <summary>Segments being filled ahead of the log, by number (under the lock of <see cref="_handles"/>).</summary>
    private readonly Dictionary<int, SegmentFill> _fills = [];

    /// <summary>The highest segment a fill was considered for (-1: none yet).</summary>
    private int _preparedThrough = -1;

    /// <param name="path">The segment files' path, without the segment number.</param>
    /// <param name="inner">The device that reads (and, unless it is FASTER's managed file device, writes).</param>
    /// <param name="files">How files are written and given back.</param>
    /// <param name="durableBegin">Where the durable commit metadata starts the log: segments below it may go.</param>
    /// <param name="onWriteFailed">Told at once when a write fails.</param>
    /// <param name="hasRoom">Whether the disk has room for so many bytes more beyond the reserve; null: segments are not filled ahead.</param>
    public LogDevice(string path, IDevice inner, DataFiles files, Func<long> durableBegin, Action<uint> onWriteFailed, Func<long, bool>? hasRoom = null)
        : base(path, inner.SectorSize, inner.Capacity)
    {
        _inner = inner;
        _files = files;
        _durableBegin = durableBegin;
        _hasRoom = hasRoom;
        _onWriteFailed = onWriteFailed;
        _onWritten = OnWritten;
        if (inner is ManagedLocalStorageDevice)
        {
            _writes = new WriteQueue<PendingWrite>();
            _writers = new Thread[Writers];
            for (var i = 0; i < Writers; i++)
            {
                _writers[i] = new Thread(WriteLoop) { IsBackground = true, Name = "MiniQueue log writer" };
                _writers[i].Start();
            }
        }
    }

    /// <summary>Segments FasterLog let go of that still wait for durable metadata before they are deleted.</summary>
    public int HeldSegments
    {
        get
        {
            lock (_held)
            {
                return _held.Count;
            }
        }
    }

    public override void Initialize(long segmentSize, LightEpoch? epoch = null, bool omitSegmentIdFromFilename = false)
    {
        base.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
        _inner.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
    }

    public override void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
    {
        if (_writes is null)
        {
            _inner.WriteAsync(sourceAddress, segmentId, destinationAddress, numBytesToWrite, _onWritten, new Write(callback, context));
            return;
        }

        HandleCapacity(segmentId);
        _writes.Add(new PendingWrite(sourceAddress, segmentId, (long)destinationAddress, numBytesToWrite, callback, context));
    }

    private void WriteLoop()
    {
        var spin = true;
        while (_writes!.TryTake(ref spin, out var write))
        {
            uint errorCode = 0;
            var written = write.Length;
            if (_hasRoom is not null && write.Segment >= Volatile.Read(ref _preparedThrough) && write.Destination >= SegmentSize / 2)
            {
                // Half-way through a segment: the next one is filled ahead.
                Prepare(write.Segment + 1);
            }

            try
            {
                unsafe
                {
                    RandomAccess.Write(HandleOf(write.Segment), new ReadOnlySpan<byte>((void*)write.Source, (int)write.Length), write.Destination);
                }
            }
            catch (Exception)
            {
                // As the device inside reports it: every failure as the same code, nothing written.
                errorCode = uint.MaxValue;
                written = 0;
                ReportFailure();
            }

            try
            {
                write.Callback(errorCode, written, write.Context);
            }
            catch (Exception)
            {
                // FasterLog's completion failed: its state can no longer be trusted, so the store must fail (and reopen),
                // as for a failed write. (The device inside ran completions in tasks whose failures nobody saw.)
                ReportFailure();
            }
        }
    }

    /// <summary>Tells the store a write failed; nothing the store does then may end a writer thread (it would end the process).</summary>
    private void ReportFailure()
    {
        try
        {
            _onWriteFailed(uint.MaxValue);
        }
        catch (Exception)
        {
            // The store marks itself faulted before anything in it can throw; there is no one else to tell.
        }
    }

    private SafeFileHandle HandleOf(int segment)
    {
        lock (_handles)
        {
            if (!_handles.TryGetValue(segment, out var handle))
            {
                // A fill ahead of the log ends before the log writes the file.
                if (_fills.Remove(segment, out var fill))
                {
                    fill.Stop();
                }

                // As FASTER's managed device opens its write handles: created if missing, written through, unbuffered.
                handle = File.OpenHandle(
                    GetSegmentFilename(FileName, segment), FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete,
                    FileOptions.WriteThrough | NoBuffering);
                _handles[segment] = handle;

                // The log is written at its tail: segments two behind it are done with (a write to one would open it
                // again). A write still in progress keeps its handle open until it returns.
                foreach (var old in _handles.Keys.Where(old => old < segment - 1).ToList())
                {
                    _handles.Remove(old, out var done);
                    done?.Dispose();
                }
            }

            return handle;
        }
    }

    /// <summary>
    /// Starts filling the segment the log's tail is in, past what its file holds: called once the log is open, before it
    /// writes (a write to the segment first stops the fill).
    /// </summary>
    public void PrepareTail(long tailAddress)
    {
        if (SegmentSize > 0)
        {
            Prepare((int)(tailAddress / SegmentSize));
        }
    }

    /// <summary>Starts filling a segment, once, if the log has not opened it for writing yet.</summary>
    private void Prepare(int segment)
    {
        if (_hasRoom is null || _writes is null || SegmentSize <= 0)
        {
            return;
        }

        lock (_handles)
        {
            if (segment <= _preparedThrough)
            {
                return;
            }

            _preparedThrough = segment;
            if (!_handles.ContainsKey(segment))
            {
                _fills[segment] = SegmentFill.Start(GetSegmentFilename(FileName, segment), SegmentSize, _hasRoom, _files);
            }
        }
    }

    private void CloseHandle(int segment)
    {
        lock (_handles)
        {
            if (_handles.Remove(segment, out var handle))
            {
                handle.Dispose();
            }
        }
    }

    public override void ReadAsync(int segmentId, ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context) =>
        _inner.ReadAsync(segmentId, sourceAddress, destinationAddress, readLength, callback, context);

    public override void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result)
    {
        if (IsReleased(segment))
        {
            CloseHandle(segment);
            _inner.RemoveSegmentAsync(segment, callback, result);
            return;
        }

        lock (_held)
        {
            _held.Add(segment);
        }

        callback(result);
    }

    /// <summary>Keeps a segment file that lies wholly below the log's start until the metadata lets it go.</summary>
    public void Hold(int segment)
    {
        lock (_held)
        {
            _held.Add(segment);
        }
    }

    /// <summary>
    /// Deletes the held segments that the durable commit metadata no longer needs, and gives back the blocks of the
    /// segment the log starts in below its start (the log may start mid-segment after a truncation made short of space).
    /// </summary>
    public void DeleteReleasedSegments()
    {
        List<int> released;
        long begin;
        long punchFrom;
        lock (_held)
        {
            released = [.. _held.Where(IsReleased)];
            foreach (var segment in released)
            {
                _held.Remove(segment);
            }

            begin = _durableBegin();
            punchFrom = Math.Max(_punchedUntil, begin / SegmentSize * SegmentSize);
            _punchedUntil = Math.Max(_punchedUntil, begin);
        }

        foreach (var segment in released)
        {
            CloseHandle(segment);
            _inner.RemoveSegment(segment);
        }

        if (begin > punchFrom && SegmentSize > 0)
        {
            var segment = begin / SegmentSize;
            _files.PunchHole($"{FileName}.{segment}", punchFrom - (segment * SegmentSize), begin - punchFrom);
        }
    }

    public override long GetFileSize(int segment) => _inner.GetFileSize(segment);

    public override void Dispose()
    {
        if (_writes is not null)
        {
            // The writes asked for are made (FasterLog waits for their completions), then the threads end.
            _writes.CompleteAdding();
            foreach (var writer in _writers)
            {
                writer.Join();
            }

            lock (_handles)
            {
                foreach (var fill in _fills.Values)
                {
                    fill.Stop();
                }

                _fills.Clear();
                foreach (var handle in _handles.Values)
                {
                    handle.Dispose();
                }

                _handles.Clear();
            }
        }

        _inner.Dispose();
    }

    private bool IsReleased(int segment) => (segment + 1L) * SegmentSize <= _durableBegin();

    private void OnWritten(uint errorCode, uint numBytes, object context)
    {
        var write = (Write)context;
        if (errorCode != 0)
        {
            _onWriteFailed(errorCode);
        }

        write.Callback(errorCode, numBytes, write.Context);
    }

    private sealed record Write(DeviceIOCompletionCallback Callback, object Context);

    private sealed record PendingWrite(IntPtr Source, int Segment, long Destination, uint Length, DeviceIOCompletionCallback Callback, object Context);
}
