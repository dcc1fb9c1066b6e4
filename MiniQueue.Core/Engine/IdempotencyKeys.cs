using System.Buffers.Binary;
using System.Text;

namespace MiniQueue.Engine;

/// <summary>
/// The idempotency keys one topic remembers: those published within its window, oldest first. Guarded by the topic's
/// lock. A key counts once its publish is durable; a repeat that comes while the first is still on its way waits for it.
/// </summary>
internal sealed class IdempotencyKeys(long windowTicks)
{
    private readonly Dictionary<string, Key> _keys = new(StringComparer.Ordinal);

    /// <summary>The keys in publish order (their log records are in the same order); forgotten ones are skipped.</summary>
    private readonly Queue<Key> _order = new();

    public int Count => _keys.Count;

    /// <summary>Forgets the durable keys whose window has passed at <paramref name="now"/>.</summary>
    public void Expire(long now)
    {
        while (_order.TryPeek(out var key) && (key.IsForgotten || (key.IsDurable && now - key.PublishedTicks >= windowTicks)))
        {
            _order.Dequeue();
            if (!key.IsForgotten)
            {
                _keys.Remove(key.Text);
                key.IsForgotten = true;
            }
        }
    }

    public Key? Find(string text) => _keys.GetValueOrDefault(text);

    /// <summary>Remembers a key whose publish was just appended (durable or not yet).</summary>
    public Key Add(string text, byte[] utf8, long publishedTicks, long address, bool durable)
    {
        var key = new Key(text, utf8, publishedTicks) { Address = address, IsDurable = durable };
        _keys[text] = key;
        _order.Enqueue(key);
        return key;
    }

    /// <summary>Forgets a key whose publish failed; a publish waiting on it is told to publish after all.</summary>
    public void Forget(Key key)
    {
        if (!key.IsForgotten && _keys.TryGetValue(key.Text, out var current) && ReferenceEquals(current, key))
        {
            _keys.Remove(key.Text);
        }

        key.IsForgotten = true;
        key.Original?.TrySetResult(false);
    }

    /// <summary>Where the oldest remembered key's record is in the log (long.MaxValue when there is none).</summary>
    public long OldestAddress(long now)
    {
        Expire(now);
        foreach (var key in _order)
        {
            if (!key.IsForgotten)
            {
                return key.Address;
            }
        }

        return long.MaxValue;
    }

    /// <summary>The durable keys, oldest first, for a checkpoint.</summary>
    public IEnumerable<Key> Durable() => _order.Where(static key => !key.IsForgotten && key.IsDurable);

    /// <summary>After a checkpoint wrote the durable keys again at <paramref name="address"/>: their records are there now.</summary>
    public void Relocate(long address)
    {
        foreach (var key in Durable())
        {
            key.Address = address;
        }
    }

    /// <summary>Writes checkpoint entries (<c>[ticks:8][length:1][key]</c>) of the given keys, in chunks of at most <paramref name="chunkBytes"/>.</summary>
    public static IEnumerable<ReadOnlyMemory<byte>> Encode(IEnumerable<Key> keys, int chunkBytes)
    {
        var buffer = new byte[chunkBytes];
        var used = 0;
        foreach (var key in keys)
        {
            var length = Storage.LogRecord.KeyEntryLength(key.Utf8.Length);
            if (used + length > chunkBytes)
            {
                yield return buffer.AsMemory(0, used).ToArray();
                used = 0;
            }

            BinaryPrimitives.WriteInt64LittleEndian(buffer.AsSpan(used), key.PublishedTicks);
            buffer[used + sizeof(long)] = (byte)key.Utf8.Length;
            key.Utf8.CopyTo(buffer.AsSpan(used + sizeof(long) + 1));
            used += length;
        }

        if (used > 0)
        {
            yield return buffer.AsMemory(0, used).ToArray();
        }
    }

    /// <summary>Reads the entries of a CheckpointKeys record.</summary>
    /// <exception cref="InvalidDataException">The entries are malformed.</exception>
    public static IEnumerable<(byte[] Utf8, long PublishedTicks)> Decode(ReadOnlyMemory<byte> entries)
    {
        var offset = 0;
        while (offset < entries.Length)
        {
            var span = entries.Span[offset..];
            if (span.Length < sizeof(long) + 1 || span[sizeof(long)] == 0 || span.Length < sizeof(long) + 1 + span[sizeof(long)])
            {
                throw new InvalidDataException($"A checkpoint-keys record of {entries.Length} bytes is malformed.");
            }

            var ticks = BinaryPrimitives.ReadInt64LittleEndian(span);
            var length = span[sizeof(long)];
            yield return (span.Slice(sizeof(long) + 1, length).ToArray(), ticks);
            offset += sizeof(long) + 1 + length;
        }
    }

    /// <summary>The UTF-8 of a key, or null when it is not 1 to 255 bytes.</summary>
    public static byte[]? ToUtf8(string text)
    {
        var count = Encoding.UTF8.GetByteCount(text);
        return count is >= 1 and <= PublishOptions.MaxIdempotencyKeyBytes ? Encoding.UTF8.GetBytes(text) : null;
    }

    /// <summary>One remembered key.</summary>
    internal sealed class Key(string text, byte[] utf8, long publishedTicks)
    {
        public string Text { get; } = text;

        public byte[] Utf8 { get; } = utf8;

        public long PublishedTicks { get; } = publishedTicks;

        /// <summary>The address of the key's record (its IdempotencyKey record, or the checkpoint that wrote it last).</summary>
        public long Address { get; set; }

        public bool IsDurable { get; set; }

        public bool IsForgotten { get; set; }

        /// <summary>Completed when the first publish with the key is durable (true) or failed (false), if a repeat waits.</summary>
        public TaskCompletionSource<bool>? Original { get; set; }
    }
}
