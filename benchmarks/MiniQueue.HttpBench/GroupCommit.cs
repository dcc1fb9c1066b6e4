using System.Threading.Channels;
using FASTER.core;

namespace MiniQueue.HttpBench;

/// <summary>
/// The ceiling of a server that answers a publish only once it is on disk: the bare publish route, whose requests wait
/// for a group commit (one write of what arrived and an fsync of a file; or, with <c>faster</c>, bodies appended to a
/// FasterLog and one <c>CommitAsync</c>), as many commits in flight as <c>inFlight</c>, and are resumed by one
/// thread-pool work item per commit. No queue, no log format: what is left of the durable host's cost once
/// MiniQueue's engine is taken away. The file is written full of zeros before the server starts and then written round
/// and round, so that commits write into blocks the file already has, as MiniQueue's log does into the segments it
/// fills ahead (a write that extends a file costs ext4 a journal commit more).
/// </summary>
internal sealed class GroupCommit : IDisposable
{
    private const long FileBytes = 256L * 1024 * 1024;

    private readonly FileStream? _file;
    private readonly FasterLog? _log;
    private readonly IDevice? _device;
    private readonly Lock _lock = new();
    private List<(TaskCompletionSource Done, int Length)> _waiting = [];
    private readonly Channel<bool> _requests = Channel.CreateBounded<bool>(1);
    private readonly SemaphoreSlim _slots;
    private long _position;

    public GroupCommit(string path, int inFlight, bool faster)
    {
        if (faster)
        {
            // FasterLog as MiniQueue's store opens it (1 MiB pages, a 4 MiB write buffer, per-entry checksums, fast
            // commits), but with FASTER's own commit manager and 256 MiB segments, so that a run never starts a new one.
            _device = Devices.CreateLogDevice(path, preallocateFile: false, deleteOnClose: true);
            _log = new FasterLog(new FasterLogSettings
            {
                LogDevice = _device,
                PageSizeBits = 20,
                SegmentSizeBits = 28,
                MemorySizeBits = 22,
                LogChecksum = LogChecksumType.PerEntry,
                FastCommitMode = true,
                LogCommitDir = path + ".commits",
            });
        }
        else
        {
            _file = new FileStream(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
            var zeros = new byte[1024 * 1024];
            for (long offset = 0; offset < FileBytes; offset += zeros.Length)
            {
                RandomAccess.Write(_file.SafeFileHandle, zeros, offset);
            }

            _file.Flush(flushToDisk: true);
        }

        _slots = new SemaphoreSlim(inFlight, inFlight);
        _ = Task.Run(LoopAsync);
    }

    public Task WaitAsync(ReadOnlySpan<byte> body)
    {
        var length = body.Length;
        var done = new TaskCompletionSource(TaskCreationOptions.None);
        lock (_lock)
        {
            _log?.Enqueue(body);
            _waiting.Add((done, length));
        }

        _requests.Writer.TryWrite(true);
        return done.Task;
    }

    private async Task LoopAsync()
    {
        while (await _requests.Reader.WaitToReadAsync())
        {
            _requests.Reader.TryRead(out _);
            await _slots.WaitAsync();
            List<(TaskCompletionSource Done, int Length)> batch;
            lock (_lock)
            {
                batch = _waiting;
                _waiting = [];
            }

            if (batch.Count == 0)
            {
                _slots.Release();
                continue;
            }

            _ = _log is null ? Task.Run(() => Commit(batch)) : CommitLogAsync(batch);
        }
    }

    private async Task CommitLogAsync(List<(TaskCompletionSource Done, int Length)> batch)
    {
        await _log!.CommitAsync();
        _slots.Release();
        ThreadPool.UnsafeQueueUserWorkItem(Resume, batch, preferLocal: false);
    }

    /// <summary>Resumes the requests one commit covered, one after the other.</summary>
    private static void Resume(List<(TaskCompletionSource Done, int Length)> batch)
    {
        foreach (var (done, _) in batch)
        {
            done.SetResult();
        }
    }

    private void Commit(List<(TaskCompletionSource Done, int Length)> batch)
    {
        var bytes = 0;
        foreach (var (_, length) in batch)
        {
            bytes += length + 16;
        }

        long position;
        lock (_lock)
        {
            if (_position + bytes > FileBytes)
            {
                _position = 0;
            }

            position = _position;
            _position += bytes;
        }

        RandomAccess.Write(_file!.SafeFileHandle, new byte[bytes], position);
        _file.Flush(flushToDisk: true);
        _slots.Release();

        // Already on a work item of its own (Task.Run), which resumes the requests.
        Resume(batch);
    }

    public void Dispose()
    {
        _requests.Writer.TryComplete();
        _file?.Dispose();
        _log?.Dispose();
        _device?.Dispose();
        _slots.Dispose();
    }
}
