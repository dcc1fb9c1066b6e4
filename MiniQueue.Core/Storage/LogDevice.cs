using FASTER.core;

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
/// </list>
/// </remarks>
internal sealed class LogDevice : StorageDeviceBase
{
    private readonly IDevice _inner;
    private readonly DataFiles _files;
    private readonly Func<long> _durableBegin;
    private readonly Action<uint> _onWriteFailed;
    private readonly DeviceIOCompletionCallback _onWritten;
    private readonly SortedSet<int> _held = [];
    private long _punchedUntil;

    public LogDevice(string path, IDevice inner, DataFiles files, Func<long> durableBegin, Action<uint> onWriteFailed)
        : base(path, inner.SectorSize, inner.Capacity)
    {
        _inner = inner;
        _files = files;
        _durableBegin = durableBegin;
        _onWriteFailed = onWriteFailed;
        _onWritten = OnWritten;
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

    public override void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context) =>
        _inner.WriteAsync(sourceAddress, segmentId, destinationAddress, numBytesToWrite, _onWritten, new Write(callback, context));

    public override void ReadAsync(int segmentId, ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context) =>
        _inner.ReadAsync(segmentId, sourceAddress, destinationAddress, readLength, callback, context);

    public override void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result)
    {
        if (IsReleased(segment))
        {
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
            _inner.RemoveSegment(segment);
        }

        if (begin > punchFrom && SegmentSize > 0)
        {
            var segment = begin / SegmentSize;
            _files.PunchHole($"{FileName}.{segment}", punchFrom - (segment * SegmentSize), begin - punchFrom);
        }
    }

    public override long GetFileSize(int segment) => _inner.GetFileSize(segment);

    public override void Dispose() => _inner.Dispose();

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
}
