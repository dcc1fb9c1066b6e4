using FASTER.core;

namespace MiniQueue.Tests.Storage;

/// <summary>The disk the fault-injecting devices share: every device the store opens on it sees it fail and recover.</summary>
internal sealed class SimulatedDisk
{
    private int _failedWrites;
    private int _tornWrites;

    /// <summary>While set, every write fails, as on a full disk (ENOSPC).</summary>
    public volatile bool Full;

    /// <summary>While set, every write fails, as on a failing device (EIO).</summary>
    public volatile bool Failing;

    public int FailedWrites => Volatile.Read(ref _failedWrites);

    /// <summary>The next <paramref name="count"/> writes write only their first half, then fail (a power loss or a device that dies mid-write).</summary>
    public void TearNextWrites(int count) => Volatile.Write(ref _tornWrites, count);

    public void CountFailedWrite() => Interlocked.Increment(ref _failedWrites);

    public bool TakeTornWrite()
    {
        while (true)
        {
            var left = Volatile.Read(ref _tornWrites);
            if (left <= 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _tornWrites, left - 1, left) == left)
            {
                return true;
            }
        }
    }
}

/// <summary>
/// A FASTER device over a real file device that fails writes the way a full disk or a failing device does (the
/// completion reports an I/O error), or writes half of one and then fails (a torn write).
/// </summary>
internal sealed class FaultInjectingDevice : StorageDeviceBase
{
    private const uint IoError = 5;
    private const uint NoSpaceLeftOnDevice = 28;
    private readonly IDevice _inner;
    private readonly SimulatedDisk _disk;

    public FaultInjectingDevice(string path, SimulatedDisk disk)
        : base(path, 512, Devices.CAPACITY_UNSPECIFIED)
    {
        _inner = Devices.CreateLogDevice(path, preallocateFile: false, deleteOnClose: false);
        _disk = disk;
    }

    public override void Initialize(long segmentSize, LightEpoch? epoch = null, bool omitSegmentIdFromFilename = false)
    {
        base.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
        _inner.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
    }

    public override void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
    {
        if (_disk.Full || _disk.Failing)
        {
            _disk.CountFailedWrite();
            var error = _disk.Full ? NoSpaceLeftOnDevice : IoError;
            _ = Task.Run(() => callback(error, 0, context));
            return;
        }

        if (_disk.TakeTornWrite())
        {
            // The first half (whole sectors) reaches the disk; then the device fails.
            _disk.CountFailedWrite();
            var half = numBytesToWrite / 2 / 512 * 512;
            if (half == 0)
            {
                _ = Task.Run(() => callback(IoError, 0, context));
                return;
            }

            _inner.WriteAsync(sourceAddress, segmentId, destinationAddress, half, (_, _, _) => callback(IoError, 0, context), context);
            return;
        }

        _inner.WriteAsync(sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context);
    }

    public override void ReadAsync(int segmentId, ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context) =>
        _inner.ReadAsync(segmentId, sourceAddress, destinationAddress, readLength, callback, context);

    public override void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result) =>
        _inner.RemoveSegmentAsync(segment, callback, result);

    public override long GetFileSize(int segment) => _inner.GetFileSize(segment);

    public override void Dispose() => _inner.Dispose();
}

/// <summary>
/// The store's small files (commit metadata, manifest) on a disk that can fail: every write throws while
/// <see cref="Failing"/> is set, or the next write leaves half a file and throws (as a crash in the middle of it would).
/// </summary>
internal sealed class FaultInjectingFiles : MiniQueue.Storage.DataFiles
{
    private int _failed;
    private int _written;

    /// <summary>While set, every write fails with an I/O error.</summary>
    public volatile bool Failing;

    /// <summary>When set, the next write writes half its bytes, then fails.</summary>
    public volatile bool TearNext;

    public int FailedWrites => Volatile.Read(ref _failed);

    public int Writes => Volatile.Read(ref _written);

    protected override void WriteDurably(string path, ReadOnlySpan<byte> contents)
    {
        if (Failing)
        {
            Interlocked.Increment(ref _failed);
            throw new IOException("Input/output error (injected)");
        }

        if (TearNext)
        {
            TearNext = false;
            Interlocked.Increment(ref _failed);
            base.WriteDurably(path, contents[..(contents.Length / 2)]);
            throw new IOException("Input/output error in the middle of a write (injected)");
        }

        base.WriteDurably(path, contents);
        Interlocked.Increment(ref _written);
    }
}
