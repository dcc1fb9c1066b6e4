using FASTER.core;

namespace MiniQueue.Tests.Storage;

/// <summary>The disk the fault-injecting devices share: every device the store opens on it sees it fill up and empty.</summary>
internal sealed class SimulatedDisk
{
    private int _failedWrites;

    /// <summary>While set, every write fails.</summary>
    public volatile bool Full;

    public int FailedWrites => Volatile.Read(ref _failedWrites);

    public void CountFailedWrite() => Interlocked.Increment(ref _failedWrites);
}

/// <summary>
/// A FASTER device over a real file device that fails every write while its <see cref="SimulatedDisk"/> is full, the
/// way a full disk does (the completion reports an I/O error).
/// </summary>
internal sealed class FaultInjectingDevice : StorageDeviceBase
{
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
        if (_disk.Full)
        {
            _disk.CountFailedWrite();
            _ = Task.Run(() => callback(NoSpaceLeftOnDevice, 0, context));
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
