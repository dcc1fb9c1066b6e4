namespace MiniQueue.Engine;

/// <summary>
/// Where the live message bodies are in the store's log, by segment, so the engine can decide how far the log's start
/// can move: everything before a truncation point must be either dead or copied forward first.
/// </summary>
/// <remarks>
/// A segment's "live bytes" are the footprints of the publish records of messages that still exist (ready, held,
/// delayed or not yet durable). Records of other kinds never keep a segment alive: the checkpoints written before a
/// truncation carry everything replay needs about the messages whose bodies moved.
/// </remarks>
internal sealed class LogSpace(long segmentSize)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<long, long> _liveBytes = [];
    private long _highestSegment = -1;

    /// <summary>Whether the store reclaims space at all.</summary>
    public bool Enabled => segmentSize > 0;

    public long SegmentSize => segmentSize;

    /// <summary>Counts a live body; returns true when it is the first in a new segment (a moment to consider compaction).</summary>
    public bool Track(long address, long footprint)
    {
        if (!Enabled)
        {
            return false;
        }

        var segment = address / segmentSize;
        lock (_lock)
        {
            _liveBytes[segment] = _liveBytes.GetValueOrDefault(segment) + footprint;
            if (segment <= _highestSegment)
            {
                return false;
            }

            _highestSegment = segment;
            return true;
        }
    }

    /// <summary>Stops counting a body that is gone or moved.</summary>
    public void Release(long address, long footprint)
    {
        if (!Enabled)
        {
            return;
        }

        var segment = address / segmentSize;
        lock (_lock)
        {
            var left = _liveBytes.GetValueOrDefault(segment) - footprint;
            if (left <= 0)
            {
                _liveBytes.Remove(segment);
            }
            else
            {
                _liveBytes[segment] = left;
            }
        }
    }

    /// <summary>The live bytes of the bodies before <paramref name="address"/>.</summary>
    public long LiveBytesBefore(long address)
    {
        lock (_lock)
        {
            return _liveBytes.Where(pair => pair.Key < address / segmentSize).Sum(pair => pair.Value);
        }
    }

    /// <summary>
    /// The furthest segment boundary the log's start can move to, given where it starts and where its tail is, such that
    /// the live bodies that must be copied forward are at most <paramref name="maxCopiedFraction"/> of the space freed;
    /// <paramref name="begin"/> when no whole segment qualifies. The tail's own segment is never freed.
    /// </summary>
    public long ChooseTruncationPoint(long begin, long tail, double maxCopiedFraction)
    {
        if (!Enabled)
        {
            return begin;
        }

        var firstSegment = begin / segmentSize;
        var tailSegment = tail / segmentSize;
        var best = begin;
        long live = 0;
        lock (_lock)
        {
            for (var segment = firstSegment; segment < tailSegment; segment++)
            {
                live += _liveBytes.GetValueOrDefault(segment);
                var point = (segment + 1) * segmentSize;
                if (live <= maxCopiedFraction * (point - begin))
                {
                    best = point;
                }
            }
        }

        return best;
    }
}
