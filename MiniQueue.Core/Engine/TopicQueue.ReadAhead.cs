namespace MiniQueue.Engine;

// Reading a body ahead for LocalConsumer.TryReceive, which never waits for a disk read.
internal sealed partial class TopicQueue
{
    /// <summary>
    /// For <see cref="LocalConsumer.TryReceive"/>, which never waits for a disk read: takes the next message only when
    /// its body is at hand (in memory, or read ahead by an earlier call), with that body. When the body must be read
    /// first, it takes nothing, starts reading it ahead (one read at a time per topic) and returns false.
    /// </summary>
    public bool TryTakeAtHandLocked(out MessageEntry entry, out ReadOnlyMemory<byte>? readAhead)
    {
        readAhead = null;
        while (PeekNextLocked(out entry))
        {
            if (IsSpentLocked(entry))
            {
                // Set aside for the dead-letter topic, as a take would; then look at the next one.
                TryTakeLocked(out _);
                continue;
            }

            if (entry.Body is not null)
            {
                return TakeNextLocked(out entry);
            }

            if (_readAhead is { } ahead && ahead.Id == entry.Id && ahead.Address == entry.Address && ahead.Body is { } body)
            {
                _readAhead = null;
                readAhead = body;
                return TakeNextLocked(out entry);
            }

            if (_readAhead is null || _readAhead.Body is not null || _readAhead.Id != entry.Id)
            {
                var read = new ReadAhead(entry.Id, entry.Address);
                _readAhead = read;
                _ = ReadAheadAsync(read, entry);
            }

            return false;
        }

        return false;
    }

    /// <summary>Reads a body ahead for <see cref="TryTakeAtHandLocked"/>; a failure is left for a receive to meet.</summary>
    private async Task ReadAheadAsync(ReadAhead read, MessageEntry entry)
    {
        try
        {
            var delivery = await ReadDeliveryAsync(entry).ConfigureAwait(false);
            lock (SyncRoot)
            {
                if (ReferenceEquals(_readAhead, read))
                {
                    read.Body = delivery.Payload;
                }
            }
        }
        catch (Exception exception) when (exception is MiniQueueStoreException or ObjectDisposedException)
        {
            lock (SyncRoot)
            {
                if (ReferenceEquals(_readAhead, read))
                {
                    _readAhead = null;
                }
            }
        }
    }

    /// <summary>A body read ahead of its message's delivery: which message, where its body was, and the body once read.</summary>
    private sealed class ReadAhead(long id, long address)
    {
        public long Id { get; } = id;

        public long Address { get; } = address;

        public ReadOnlyMemory<byte>? Body { get; set; }
    }
}
