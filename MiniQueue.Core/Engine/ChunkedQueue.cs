using System.Collections;
using System.Runtime.CompilerServices;

namespace MiniQueue.Engine;

/// <summary>
/// A first-in first-out queue kept in chunks of <see cref="ChunkSize"/> items, for a topic's ready messages. A
/// <see cref="Queue{T}"/> of millions of entries lives in one array on the large object heap, doubles it as it grows
/// (with both the old and the new array alive while it copies) and never gives it back; chunks stay small, are added and
/// dropped as the queue grows and drains, and one is kept spare so that a short queue reuses it.
/// </summary>
internal sealed class ChunkedQueue<T> : IEnumerable<T>
{
    /// <summary>2,048 items: 64 KiB of 32-byte entries, under the large object heap's 85,000 bytes.</summary>
    public const int ChunkSize = 2048;

    private Chunk _head;
    private Chunk _tail;
    private Chunk? _spare;
    private int _headIndex;
    private int _tailIndex;

    public ChunkedQueue()
    {
        _head = _tail = new Chunk();
    }

    public int Count { get; private set; }

    public void Enqueue(T item)
    {
        if (_tailIndex == ChunkSize)
        {
            var next = _spare ?? new Chunk();
            _spare = null;
            _tail.Next = next;
            _tail = next;
            _tailIndex = 0;
        }

        _tail.Items[_tailIndex++] = item;
        Count++;
    }

    /// <summary>The item <see cref="TryDequeue"/> would return next, left in place.</summary>
    public bool TryPeek(out T item)
    {
        if (Count == 0)
        {
            item = default!;
            return false;
        }

        item = _head.Items[_headIndex];
        return true;
    }

    public bool TryDequeue(out T item)
    {
        if (Count == 0)
        {
            item = default!;
            return false;
        }

        item = _head.Items[_headIndex];
        if (RuntimeHelpers.IsReferenceOrContainsReferences<T>())
        {
            _head.Items[_headIndex] = default!;
        }

        _headIndex++;
        Count--;
        if (Count == 0)
        {
            // Empty: start over in the same chunk.
            _headIndex = _tailIndex = 0;
            _head.Next = null;
            _tail = _head;
        }
        else if (_headIndex == ChunkSize)
        {
            var done = _head;
            _head = done.Next!;
            _headIndex = 0;
            done.Next = null;
            _spare = done;
        }

        return true;
    }

    public void Clear()
    {
        _head = _tail = _spare ?? new Chunk();
        _head.Next = null;
        _spare = null;
        _headIndex = _tailIndex = 0;
        Count = 0;
    }

    public T[] ToArray()
    {
        var items = new T[Count];
        var i = 0;
        foreach (var item in this)
        {
            items[i++] = item;
        }

        return items;
    }

    public Enumerator GetEnumerator() => new(this);

    IEnumerator<T> IEnumerable<T>.GetEnumerator() => GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private sealed class Chunk
    {
        public readonly T[] Items = new T[ChunkSize];
        public Chunk? Next;
    }

    /// <summary>Walks the items in order; the queue must not change meanwhile.</summary>
    public struct Enumerator : IEnumerator<T>
    {
        private readonly ChunkedQueue<T> _queue;
        private Chunk? _chunk;
        private int _index;
        private int _left;

        internal Enumerator(ChunkedQueue<T> queue)
        {
            _queue = queue;
            _chunk = queue._head;
            _index = queue._headIndex - 1;
            _left = queue.Count;
            Current = default!;
        }

        public T Current { get; private set; }

        readonly object? IEnumerator.Current => Current;

        public bool MoveNext()
        {
            if (_left == 0)
            {
                return false;
            }

            _index++;
            if (_index == ChunkSize)
            {
                _chunk = _chunk!.Next;
                _index = 0;
            }

            Current = _chunk!.Items[_index];
            _left--;
            return true;
        }

        public void Reset() => this = new Enumerator(_queue);

        public readonly void Dispose()
        {
        }
    }
}
