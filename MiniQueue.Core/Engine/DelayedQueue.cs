namespace MiniQueue.Engine;

/// <summary>
/// A topic's delayed messages (DACKed, or published with a delay), earliest due first and, at the same due time, in the
/// order they were delayed (<see cref="DueKey"/>). Messages delayed by the same amount come due in the order they were
/// delayed, so most keys arrive in order: the queue keeps them in lanes, each an <see cref="EntryQueue"/> whose keys only
/// grow, and merges the lanes' heads with a small heap. A key goes to the lane with the greatest last key not above it
/// (one lane for each delay a topic uses, a few hundred for random delays); a key below every lane's last starts a new
/// lane. So a delayed message costs a few bytes, as a ready one does, where a heap of <see cref="MessageEntry"/> took 48
/// and grew as one array. Beyond <see cref="MaxLanes"/> lanes (keys that keep falling, such as ever shorter delays), the
/// rest go to such a heap, which is merged the same way.
/// </summary>
internal sealed class DelayedQueue
{
    /// <summary>The most lanes kept; a near-empty lane costs a few hundred bytes.</summary>
    public const int MaxLanes = 1024;

    // Lanes by their last key, greatest first: a new lane, whose key is below every lane's last, goes at the end.
    private readonly List<EntryQueue> _lanes = [];
    private readonly PriorityQueue<EntryQueue, DueKey> _heads = new();
    private readonly PriorityQueue<MessageEntry, DueKey> _overflow = new();
    private EntryQueue? _spare;
    private int _inLanes;

    public int Count => _inLanes + _overflow.Count;

    /// <summary>How many lanes the queue keeps now (for tests).</summary>
    internal int LaneCount => _lanes.Count;

    public void Enqueue(in MessageEntry entry, DueKey key)
    {
        // The first lane (greatest last key first) whose last key is not above the new one.
        var low = 0;
        var high = _lanes.Count;
        while (low < high)
        {
            var middle = (low + high) >>> 1;
            if (_lanes[middle].LastKey.CompareTo(key) <= 0)
            {
                high = middle;
            }
            else
            {
                low = middle + 1;
            }
        }

        if (low < _lanes.Count)
        {
            // Its head, already in the heap, stays its head; its last key grows but stays below the lane before it.
            _lanes[low].Enqueue(entry, key);
            _inLanes++;
            return;
        }

        if (_lanes.Count == MaxLanes)
        {
            _overflow.Enqueue(entry, key);
            return;
        }

        var lane = _spare ?? new EntryQueue();
        _spare = null;
        lane.Enqueue(entry, key);
        _lanes.Add(lane);
        _heads.Enqueue(lane, key);
        _inLanes++;
    }

    /// <summary>The key of the message due first, if any (no entry is read for it).</summary>
    public bool TryPeekKey(out DueKey key) => Next(out key) != Source.None;

    /// <summary>The message due first, and its key, left in place.</summary>
    public bool TryPeek(out MessageEntry entry, out DueKey key)
    {
        switch (Next(out key))
        {
            case Source.Lane:
                return _heads.Peek().TryPeek(out entry);
            case Source.Overflow:
                return _overflow.TryPeek(out entry, out _);
            default:
                entry = default;
                return false;
        }
    }

    /// <summary>Takes the message due first.</summary>
    public bool TryDequeue(out MessageEntry entry, out DueKey key) => TryDequeue(long.MaxValue, out entry, out key);

    /// <summary>Takes the message due first if it is due by <paramref name="dueBy"/> (ticks).</summary>
    public bool TryDequeue(long dueBy, out MessageEntry entry, out DueKey key)
    {
        var source = Next(out key);
        if (source != Source.None && key.DueTicks > dueBy)
        {
            source = Source.None;
        }

        switch (source)
        {
            case Source.Lane:
                var lane = _heads.Peek();
                lane.TryDequeue(out entry);
                _inLanes--;
                if (lane.TryPeekKey(out var next))
                {
                    _heads.DequeueEnqueue(lane, next);
                }
                else
                {
                    // An emptied lane's last key was the least of all lanes', so it is the last lane (or near it).
                    _heads.Dequeue();
                    _lanes.RemoveAt(_lanes.LastIndexOf(lane));
                    _spare = lane;
                }

                return true;
            case Source.Overflow:
                return _overflow.TryDequeue(out entry, out _);
            default:
                entry = default;
                return false;
        }
    }

    public void Clear()
    {
        _lanes.Clear();
        _heads.Clear();
        _overflow.Clear();
        _spare = null;
        _inLanes = 0;
    }

    /// <summary>Every delayed message with its key, in no particular order; the queue must not change meanwhile.</summary>
    public IEnumerable<(MessageEntry Element, DueKey Priority)> UnorderedItems =>
        _lanes.SelectMany(static lane => lane.KeyedItems()).Concat(_overflow.UnorderedItems);

    /// <summary>
    /// Where the message due first is, and its key: a lane's head key is its priority in the heap of heads, so no entry
    /// is read to find it.
    /// </summary>
    private Source Next(out DueKey key)
    {
        var inLanes = _heads.TryPeek(out _, out var laneKey);
        var inOverflow = _overflow.TryPeek(out _, out var overflowKey);
        if (inLanes && (!inOverflow || laneKey.CompareTo(overflowKey) < 0))
        {
            key = laneKey;
            return Source.Lane;
        }

        key = overflowKey;
        return inOverflow ? Source.Overflow : Source.None;
    }

    private enum Source
    {
        None,
        Lane,
        Overflow,
    }
}
