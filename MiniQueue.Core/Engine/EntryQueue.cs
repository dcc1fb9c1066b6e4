using System.Collections;

namespace MiniQueue.Engine;

/// <summary>
/// A topic's ready messages, first in first out, in chunks stored column by column. Each column of a chunk (ids, log
/// addresses, lengths) stores only how its values differ from a guess made from the chunk's first two (see
/// <see cref="PackedColumn"/>): messages published one after the other with bodies of one size cost next to nothing,
/// others 2 to 4 bytes a column, and a value far from the rest (a message put back long after it was published) 8 in
/// its chunk; an array of <see cref="MessageEntry"/> takes 32 bytes a message. A cached body and a DACK count take a
/// column of their own only in a chunk that has one. The columns hold no references, so the GC does not scan a long
/// queue's index. Chunks start small (an empty topic costs well under a kilobyte), double up to
/// <see cref="ChunkSize"/> entries (under the large object heap's 85,000 bytes), are added and dropped as the queue
/// grows and drains, and one is kept spare so that a short queue reuses it.
/// </summary>
internal sealed class EntryQueue : IEnumerable<MessageEntry>
{
    /// <summary>The entries of a full chunk: 2,048, at most 16 KiB a column.</summary>
    public const int ChunkSize = 2048;

    /// <summary>The entries of a queue's first chunk.</summary>
    public const int FirstChunkSize = 16;

    private Chunk _head;
    private Chunk _tail;
    private Chunk? _spare;
    private int _headIndex;
    private int _tailIndex;

    public EntryQueue()
    {
        _head = _tail = new Chunk(FirstChunkSize);
    }

    public int Count { get; private set; }

    public void Enqueue(in MessageEntry entry) => Append(entry);

    /// <summary>
    /// Adds an entry with the key it is ordered by (a lane of <see cref="DelayedQueue"/>); keys are stored the way the
    /// entries are, so keys that grow with the entries cost next to nothing.
    /// </summary>
    public void Enqueue(in MessageEntry entry, DueKey key)
    {
        var (chunk, index) = Append(entry);
        chunk.SetKey(index, key);
        LastKey = key;
    }

    /// <summary>The key of the last entry <see cref="Enqueue(in MessageEntry, DueKey)"/> added.</summary>
    public DueKey LastKey { get; private set; }

    private (Chunk Chunk, int Index) Append(in MessageEntry entry)
    {
        if (_tailIndex == _tail.Capacity)
        {
            var next = _spare ?? new Chunk(Math.Min(ChunkSize, _tail.Capacity * 2));
            _spare = null;
            _tail.Next = next;
            _tail = next;
            _tailIndex = 0;
        }

        var index = _tailIndex++;
        _tail.Set(index, entry);
        Count++;
        return (_tail, index);
    }

    /// <summary>The entry <see cref="TryDequeue"/> would return next, left in place.</summary>
    public bool TryPeek(out MessageEntry entry)
    {
        if (Count == 0)
        {
            entry = default;
            return false;
        }

        entry = _head.Get(_headIndex);
        return true;
    }

    /// <summary>The key the next entry was added with (a keyed queue's).</summary>
    public bool TryPeekKey(out DueKey key)
    {
        key = Count == 0 ? default : _head.GetKey(_headIndex);
        return Count != 0;
    }

    public bool TryDequeue(out MessageEntry entry)
    {
        if (Count == 0)
        {
            entry = default;
            return false;
        }

        entry = _head.Get(_headIndex);
        _head.Forget(_headIndex);
        _headIndex++;
        Count--;
        if (Count == 0)
        {
            // Empty: start over in the same chunk.
            _headIndex = _tailIndex = 0;
            _head.Next = null;
            _tail = _head;
        }
        else if (_headIndex == _head.Capacity)
        {
            var done = _head;
            _head = done.Next!;
            _headIndex = 0;
            done.Next = null;
            if (_spare is null || done.Capacity > _spare.Capacity)
            {
                _spare = done;
            }
        }

        return true;
    }

    public void Clear()
    {
        _head = _tail = new Chunk(FirstChunkSize);
        _spare = null;
        _headIndex = _tailIndex = 0;
        Count = 0;
    }

    public MessageEntry[] ToArray()
    {
        var entries = new MessageEntry[Count];
        var i = 0;
        foreach (var entry in this)
        {
            entries[i++] = entry;
        }

        return entries;
    }

    public Enumerator GetEnumerator() => new(this);

    /// <summary>The entries in order with their keys (a keyed queue's); the queue must not change meanwhile.</summary>
    public IEnumerable<(MessageEntry Element, DueKey Priority)> KeyedItems()
    {
        var chunk = _head;
        var index = _headIndex;
        for (var left = Count; left > 0; left--)
        {
            if (index == chunk.Capacity)
            {
                chunk = chunk.Next!;
                index = 0;
            }

            yield return (chunk.Get(index), chunk.GetKey(index));
            index++;
        }
    }

    IEnumerator<MessageEntry> IEnumerable<MessageEntry>.GetEnumerator() => GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>
    /// A column of 64-bit values stored as what each differs from a guess: the chunk's first value plus the entry's
    /// index times a step (1 for ids published one after the other, a record's size for addresses written one after the
    /// other, 0 for lengths that repeat). While every value is its guess the column stores nothing; otherwise it stores
    /// the differences in 16 or 32 bits, the narrowest that has fitted every one so far, or the values in full. The
    /// arithmetic wraps, so any value comes back exactly. Index 0 is always the first written after the chunk was
    /// (re)started, when nothing in it is live, so writing it starts the column over; the array it last used is kept
    /// for the next fill.
    /// </summary>
    private struct PackedColumn(int capacity, bool learnsStep)
    {
        private const byte Exact = 0;
        private const byte Shorts = 1;
        private const byte Ints = 2;
        private const byte Full = 3;

        private long _first;
        private long _step;
        private byte _width;
        private short[]? _shorts;
        private int[]? _ints;
        private long[]? _full;

        public readonly long Get(int index) => _width switch
        {
            Exact => _first + (index * _step),
            Shorts => _first + (index * _step) + _shorts![index],
            Ints => _first + (index * _step) + _ints![index],
            _ => _full![index],
        };

        public void Set(int index, long value)
        {
            if (index == 0)
            {
                _first = value;
                _step = 0;
                _width = Exact;
                return;
            }

            if (index == 1 && learnsStep && value - _first is >= int.MinValue and <= int.MaxValue and var step)
            {
                // Entry 0 is its own guess whatever the step, so the step can be taken from entry 1.
                _step = step;
            }

            var difference = value - (_first + (index * _step));
            var width = difference == 0 ? Exact
                : difference is >= short.MinValue and <= short.MaxValue ? Shorts
                : difference is >= int.MinValue and <= int.MaxValue ? Ints
                : Full;
            if (width > _width)
            {
                Widen(index, width);
            }

            Store(index, value - difference, difference);
        }

        /// <summary>Writes an entry as wide as the column stores now.</summary>
        private readonly void Store(int index, long guess, long difference)
        {
            switch (_width)
            {
                case Exact:
                    break;
                case Shorts:
                    _shorts![index] = (short)difference;
                    break;
                case Ints:
                    _ints![index] = (int)difference;
                    break;
                default:
                    _full![index] = guess + difference;
                    break;
            }
        }

        /// <summary>Stores the first <paramref name="count"/> entries at least <paramref name="width"/> wide.</summary>
        private void Widen(int count, byte width)
        {
            var (shorts, ints, full, from) = (_shorts, _ints, _full, _width);

            // Reuse the array a previous fill left if it is wide enough (while the column stores nothing it is the only
            // array); otherwise make one and let the others go.
            var to = full is not null ? Full : ints is not null ? Ints : shorts is not null ? Shorts : Exact;
            if (to < width)
            {
                to = width;
                _shorts = to == Shorts ? new short[capacity] : null;
                _ints = to == Ints ? new int[capacity] : null;
                _full = to == Full ? new long[capacity] : null;
            }

            _width = to;
            for (var i = 0; i < count; i++)
            {
                var guess = _first + (i * _step);
                var difference = from switch
                {
                    Exact => 0L,
                    Shorts => shorts![i],
                    Ints => ints![i],
                    _ => full![i] - guess,
                };
                Store(i, guess, difference);
            }
        }
    }

    private sealed class Chunk(int capacity)
    {
        private PackedColumn _ids = new(capacity, learnsStep: true);
        private PackedColumn _addresses = new(capacity, learnsStep: true);
        private PackedColumn _lengths = new(capacity, learnsStep: false);

        // Only a keyed queue (a lane of DelayedQueue) writes these; they allocate nothing until then.
        private PackedColumn _dueTicks = new(capacity, learnsStep: true);
        private PackedColumn _sequences = new(capacity, learnsStep: true);
        private byte[]?[]? _bodies;
        private int[]? _dackCounts;

        public int Capacity { get; } = capacity;

        public Chunk? Next { get; set; }

        public MessageEntry Get(int index) =>
            new(_ids.Get(index), _addresses.Get(index), _bodies?[index], (int)_lengths.Get(index), _dackCounts is null ? 0 : _dackCounts[index]);

        public void Set(int index, in MessageEntry entry)
        {
            _ids.Set(index, entry.Id);
            _addresses.Set(index, entry.Address);
            _lengths.Set(index, entry.Length);
            if (entry.Body is not null)
            {
                (_bodies ??= new byte[]?[Capacity])[index] = entry.Body;
            }
            else if (_bodies is not null)
            {
                _bodies[index] = null;
            }

            if (entry.DackCount != 0)
            {
                (_dackCounts ??= new int[Capacity])[index] = entry.DackCount;
            }
            else if (_dackCounts is not null)
            {
                _dackCounts[index] = 0;
            }
        }

        public DueKey GetKey(int index) => new(_dueTicks.Get(index), _sequences.Get(index));

        public void SetKey(int index, DueKey key)
        {
            _dueTicks.Set(index, key.DueTicks);
            _sequences.Set(index, key.Sequence);
        }

        /// <summary>Lets go of a dequeued entry's body, so that the GC can take it.</summary>
        public void Forget(int index)
        {
            if (_bodies is not null)
            {
                _bodies[index] = null;
            }
        }
    }

    /// <summary>Walks the entries in order; the queue must not change meanwhile.</summary>
    public struct Enumerator : IEnumerator<MessageEntry>
    {
        private readonly EntryQueue _queue;
        private Chunk? _chunk;
        private int _index;
        private int _left;

        internal Enumerator(EntryQueue queue)
        {
            _queue = queue;
            _chunk = queue._head;
            _index = queue._headIndex - 1;
            _left = queue.Count;
            Current = default;
        }

        public MessageEntry Current { get; private set; }

        readonly object IEnumerator.Current => Current;

        public bool MoveNext()
        {
            if (_left == 0)
            {
                return false;
            }

            _index++;
            if (_index == _chunk!.Capacity)
            {
                _chunk = _chunk.Next;
                _index = 0;
            }

            Current = _chunk!.Get(_index);
            _left--;
            return true;
        }

        public void Reset() => this = new Enumerator(_queue);

        public readonly void Dispose()
        {
        }
    }
}
