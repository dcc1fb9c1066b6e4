using Microsoft.Extensions.Logging;

namespace MiniQueue.Storage;

/// <summary>
/// The room the data directory has left, and the reserve that publishes may not eat into: what keeps the durable store
/// from ever running out. While the room is under the reserve, publishes are refused; everything else the store writes
/// (settles, checkpoints, compaction, commits) still fits, and compaction frees whole segments as consumers drain.
/// </summary>
/// <remarks>
/// The room is the filesystem's available space (statvfs), or, with a size cap, what the cap leaves, whichever is less.
/// It is measured at most every second while there is plenty, and every 10 ms while it is short; between
/// measurements every byte the log appended since the part it had written to the disk at the measurement counts as
/// taken (appended records reach the disk a little later), so the estimate only errs on the safe side. Publishes are
/// taken again once the room is back above the reserve by a sixteenth of it, and by at least
/// <see cref="MinimumMarginBytes"/>, so that the state does not flap (with no reserve, a publish is refused when its
/// record does not fit, and publishes are taken again once the room is back to that margin).
/// </remarks>
internal sealed class DiskSpace
{
    private const long PlentyRefreshMs = 1000;
    private const long ShortRefreshMs = 10;

    /// <summary>The least room above the reserve that ends refusals, whatever the reserve (a small one, or none).</summary>
    public const long MinimumMarginBytes = 64 * 1024;

    private readonly string _directory;
    private readonly long? _maxBytes;
    private readonly Func<string, long> _measureAvailable;
    private readonly Func<long> _tail;
    private readonly Func<long> _written;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();

    /// <summary>The room at which refusals end: above the reserve by a margin.</summary>
    private readonly long _takenAgainAt;
    private long _measured;
    private long _writtenAtMeasure;
    private long _measuredAt;
    private int _refusing;

    /// <param name="directory">The data directory, whose filesystem is measured.</param>
    /// <param name="reserveBytes">The room publishes leave untouched.</param>
    /// <param name="maxBytes">A cap on what the data directory may take, if any.</param>
    /// <param name="tail">The log's tail: the address the next record gets.</param>
    /// <param name="written">How far the log is written to the disk; what lies between it and the tail takes space soon.</param>
    /// <param name="logger">Where the start and end of refusals are logged.</param>
    /// <param name="measureAvailable">How the filesystem's available bytes are measured (tests replace it).</param>
    public DiskSpace(
        string directory, long reserveBytes, long? maxBytes, Func<long> tail, Func<long> written, ILogger logger, Func<string, long>? measureAvailable = null)
    {
        _directory = directory;
        _tail = tail;
        _written = written;
        ReserveBytes = reserveBytes;
        _maxBytes = maxBytes;
        _logger = logger;
        _measureAvailable = measureAvailable ?? (static path => new DriveInfo(path).AvailableFreeSpace);
        _measuredAt = long.MinValue / 2;
        _takenAgainAt = reserveBytes + Math.Max(reserveBytes / 16, MinimumMarginBytes);
    }

    /// <summary>The room publishes leave untouched, in bytes.</summary>
    public long ReserveBytes { get; }

    /// <summary>Whether publishes are refused now for lack of room.</summary>
    public bool IsLow => Volatile.Read(ref _refusing) != 0;

    /// <summary>The room left now (measured anew), in bytes.</summary>
    public long AvailableBytes()
    {
        lock (_lock)
        {
            Measure();
            return Math.Max(0, Estimate());
        }
    }

    /// <summary>
    /// Whether a publish of <paramref name="bytes"/> would take the room under the reserve. Notes (and logs) when
    /// publishes start and stop being refused.
    /// </summary>
    public bool Refuses(long bytes)
    {
        var refusing = Volatile.Read(ref _refusing) != 0;
        var threshold = ThresholdWhile(refusing);
        var age = Environment.TickCount64 - Volatile.Read(ref _measuredAt);
        if (Estimate() - bytes >= threshold && age < PlentyRefreshMs)
        {
            // The common case: plenty of room, measured lately, and nothing to note.
            return refusing && Refresh(bytes);
        }

        return Refresh(bytes);
    }

    /// <summary>Measures again (when due) and returns whether publishes are refused; the maintenance loop calls it while refusing.</summary>
    public bool Refresh(long bytes)
    {
        lock (_lock)
        {
            var refusing = _refusing != 0;
            var threshold = ThresholdWhile(refusing);
            var age = Environment.TickCount64 - _measuredAt;
            if (age >= PlentyRefreshMs || (Estimate() - bytes < threshold && age >= ShortRefreshMs))
            {
                Measure();
            }

            var refuse = Estimate() - bytes < threshold;
            if (refuse != refusing)
            {
                Volatile.Write(ref _refusing, refuse ? 1 : 0);
                if (refuse)
                {
                    StoreLog.PublishesRefusedForSpace(_logger, _directory, _measured, ReserveBytes);
                }
                else
                {
                    StoreLog.PublishesTakenAgain(_logger, _directory, _measured, ReserveBytes);
                }
            }

            return refuse;
        }
    }

    /// <summary>Whether the store may spend <paramref name="bytes"/> on maintenance (copies and checkpoints) now.</summary>
    /// <remarks>Maintenance may use the reserve, which is there for it, but not its last quarter.</remarks>
    public bool CanSpend(long bytes)
    {
        lock (_lock)
        {
            Measure();
            return Estimate() - bytes >= ReserveBytes / 4;
        }
    }

    /// <summary>
    /// Whether the store may take <paramref name="bytes"/> before it needs them (a log segment filled ahead): only while
    /// that leaves the reserve and as much again untouched, so that it never brings refusals closer.
    /// </summary>
    public bool HasRoomAhead(long bytes)
    {
        lock (_lock)
        {
            Measure();
            return Estimate() - (2 * bytes) >= ReserveBytes;
        }
    }

    /// <summary>The room a publish must leave: the reserve, or while refusing, the reserve and a margin.</summary>
    private long ThresholdWhile(bool refusing) => refusing ? _takenAgainAt : ReserveBytes;

    private long Estimate() => Volatile.Read(ref _measured) - Math.Max(0, _tail() - Volatile.Read(ref _writtenAtMeasure));

    private void Measure()
    {
        // Read how far the log is written before asking the disk, so that nothing written in between is counted twice
        // or not at all: it is counted (again), which errs on the safe side.
        var written = _written();
        long available;
        try
        {
            available = _measureAvailable(_directory);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // The filesystem cannot be asked (it went away?): assume there is no room rather than plenty.
            available = 0;
        }

        if (_maxBytes is { } cap)
        {
            available = Math.Min(available, cap - UsedBytes());
        }

        Volatile.Write(ref _measured, Math.Max(0, available));
        Volatile.Write(ref _writtenAtMeasure, written);
        Volatile.Write(ref _measuredAt, Environment.TickCount64);
    }

    /// <summary>The bytes the data directory's files take.</summary>
    private long UsedBytes()
    {
        try
        {
            return new DirectoryInfo(_directory).EnumerateFiles("*", SearchOption.AllDirectories).Sum(static file => file.Length);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            return long.MaxValue / 2;
        }
    }
}
