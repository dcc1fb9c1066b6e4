namespace MiniQueue.Storage;

/// <summary>
/// Where the live message bodies are in the store's log, by page, so the engine can decide how far the log's start can
/// move: everything before a truncation point must be either dead or copied forward first.
/// </summary>
/// <remarks>
/// A page's "live bytes" are the footprints of the publish records of messages that still exist (ready, held, delayed
/// or not yet durable); a record never spans two pages. Records of other kinds never keep a page alive: the
/// checkpoints written before a truncation carry everything replay needs about the messages whose bodies moved.
/// Truncation points are normally segment boundaries (the store deletes whole segment files); while the disk is short
/// of space they may be page boundaries too (the store then gives back the freed part of a segment as well).
/// </remarks>
internal sealed class LogSpace(long segmentSize, long pageSize)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<long, long> _liveBytes = [];
    private long _highestSegment = -1;

    /// <summary>Whether the store reclaims space at all.</summary>
    public bool Enabled => segmentSize > 0 && pageSize > 0;

    public long SegmentSize => segmentSize;

    public long PageSize => pageSize;

    /// <summary>Counts a live body; returns true when it is the first record seen in a new segment (a moment to consider compaction).</summary>
    public bool Track(long address, long footprint)
    {
        if (!Enabled)
        {
            return false;
        }

        var page = address / pageSize;
        lock (_lock)
        {
            _liveBytes[page] = _liveBytes.GetValueOrDefault(page) + footprint;
            return NoteLocked(address);
        }
    }

    /// <summary>Notes a record of any kind at <paramref name="address"/>; returns true when it is the first seen in a new segment.</summary>
    public bool NoteRecord(long address)
    {
        if (!Enabled || address / segmentSize <= Volatile.Read(ref _highestSegment))
        {
            return false;
        }

        lock (_lock)
        {
            return NoteLocked(address);
        }
    }

    /// <summary>Stops counting a body that is gone or moved.</summary>
    public void Release(long address, long footprint)
    {
        if (!Enabled)
        {
            return;
        }

        var page = address / pageSize;
        lock (_lock)
        {
            var left = _liveBytes.GetValueOrDefault(page) - footprint;
            if (left <= 0)
            {
                _liveBytes.Remove(page);
            }
            else
            {
                _liveBytes[page] = left;
            }
        }
    }

    /// <summary>The live bytes of the bodies before <paramref name="address"/> (a page boundary).</summary>
    public long LiveBytesBefore(long address)
    {
        lock (_lock)
        {
            return _liveBytes.Where(pair => pair.Key < address / pageSize).Sum(pair => pair.Value);
        }
    }

    /// <summary>
    /// The furthest boundary (a multiple of <paramref name="alignment"/>, the segment or the page size) the log's start
    /// can move to, given where it starts and where its tail is, such that the live bodies that must be copied forward
    /// are at most <paramref name="maxCopiedFraction"/> of the space freed; <paramref name="begin"/> when none qualifies.
    /// The unit (segment or page) the tail is in is never freed.
    /// </summary>
    public long ChooseTruncationPoint(long begin, long tail, double maxCopiedFraction, long alignment)
    {
        if (!Enabled)
        {
            return begin;
        }

        var best = begin;
        var end = tail / alignment * alignment;
        long live = 0;
        lock (_lock)
        {
            for (var page = begin / pageSize; (page + 1) * pageSize <= end; page++)
            {
                live += _liveBytes.GetValueOrDefault(page);
                var point = (page + 1) * pageSize;
                if (point > begin && point % alignment == 0 && live <= maxCopiedFraction * (point - begin))
                {
                    best = point;
                }
            }
        }

        return best;
    }

    private bool NoteLocked(long address)
    {
        var segment = address / segmentSize;
        if (segment <= _highestSegment)
        {
            return false;
        }

        Volatile.Write(ref _highestSegment, segment);
        return true;
    }
}
