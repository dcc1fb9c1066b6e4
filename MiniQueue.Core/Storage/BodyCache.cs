namespace MiniQueue.Storage;

/// <summary>
/// The memory a durable engine spends on keeping message bodies, so that delivering them needs no read from the log
/// (<see cref="MiniQueueOptions.BodyCacheBytes"/>). Shared by every topic's journal; thread-safe.
/// </summary>
internal sealed class BodyCache(long limit)
{
    private long _bytes;

    /// <summary>The bytes of message bodies kept in memory now.</summary>
    public long Bytes => Volatile.Read(ref _bytes);

    /// <summary>Takes room for a body of <paramref name="length"/> bytes, if there is room.</summary>
    public bool TryReserve(int length)
    {
        var footprint = Footprint(length);
        if (Interlocked.Add(ref _bytes, footprint) <= limit)
        {
            return true;
        }

        Interlocked.Add(ref _bytes, -footprint);
        return false;
    }

    /// <summary>Gives back the room of a body that is gone.</summary>
    public void Release(int length) => Interlocked.Add(ref _bytes, -Footprint(length));

    /// <summary>
    /// The memory a cached body of <paramref name="length"/> bytes takes: its array, with the runtime's 24-byte header and
    /// its length rounded up to 8 bytes. Counting the bytes alone let a flood of 10-byte messages take four times the cache.
    /// </summary>
    public static long Footprint(int length) => 24 + ((length + 7L) & ~7L);
}
