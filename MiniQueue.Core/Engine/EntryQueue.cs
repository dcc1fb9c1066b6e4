using System.Collections;

namespace MiniQueue.Engine;

/// <summary>
/// A topic's ready messages, first in first out, in chunks stored column by column: 12 bytes a message in the usual
/// case (its id and its address as 32-bit offsets from the chunk's first, and its length), against 32 for an array of
/// <see cref="MessageEntry"/>. A cached body and a DACK count take a column of their own only in a chunk that has one.
/// The columns hold no references, so the GC does not scan a long queue's index. Chunks start small (an empty topic
/// costs well under a kilobyte), double up to <see cref="ChunkSize"/> entries (under the large object heap's 85,000
/// bytes), are added and dropped as the queue grows and drains, and one is kept spare so that a short queue reuses it.
/// </summary>
internal sealed class EntryQueue : IEnumerable<MessageEntry>
{
    /// <summary>The entries of a full chunk: 2,048, 8 KiB a column.</summary>
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

    public void Enqueue(in MessageEntry entry)
    {
        if (_tailIndex == _tail.Capacity)
        {
            var next = _spare ?? new Chunk(Math.Min(ChunkSize, _tail.Capacity * 2));
            _spare = null;
            _tail.Next = next;
            _tail = next;
            _tailIndex = 0;
        }

        _tail.Set(_tailIndex++, entry);
        Count++;
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

    IEnumerator<MessageEntry> IEnumerable<MessageEntry>.GetEnumerator() => GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>
    /// A column of 64-bit values kept as 32-bit offsets from the value at index 0, until one does not fit: then in full.
    /// The arithmetic wraps, so any value comes back exactly. Index 0 is always the first written after the chunk was
    /// (re)started, when nothing in it is live, so writing it starts the column over.
    /// </summary>
    private struct LongColumn(int capacity)
    {
        private readonly int[] _offsets = new int[capacity];
        private long[]? _full;
        private long _first;

        public readonly long Get(int index) => _full is { } full ? full[index] : _first + _offsets[index];

        public void Set(int index, long value)
        {
            if (index == 0)
            {
                _first = value;
                _full = null;
                _offsets[0] = 0;
                return;
            }

            if (_full is { } full)
            {
                full[index] = value;
                return;
            }

            var offset = value - _first;
            if (offset is >= int.MinValue and <= int.MaxValue)
            {
                _offsets[index] = (int)offset;
                return;
            }

            full = new long[_offsets.Length];
            for (var i = 0; i < index; i++)
            {
                full[i] = _first + _offsets[i];
            }

            full[index] = value;
            _full = full;
        }
    }

    private sealed class Chunk(int capacity)
    {
        private LongColumn _ids = new(capacity);
        private LongColumn _addresses = new(capacity);
        private readonly int[] _lengths = new int[capacity];
        private byte[]?[]? _bodies;
        private int[]? _dackCounts;

        public int Capacity => _lengths.Length;

        public Chunk? Next { get; set; }

        public MessageEntry Get(int index) =>
            new(_ids.Get(index), _addresses.Get(index), _bodies?[index], _lengths[index], _dackCounts is null ? 0 : _dackCounts[index]);

        public void Set(int index, in MessageEntry entry)
        {
            _ids.Set(index, entry.Id);
            _addresses.Set(index, entry.Address);
            _lengths[index] = entry.Length;
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
