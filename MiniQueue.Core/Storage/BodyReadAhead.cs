using MiniQueue.Engine;

namespace MiniQueue.Storage;

/// <summary>
/// Reads the bodies of a topic's next messages from the log in one read, for a durable engine whose body cache did not
/// keep them: when a delivery must read its body back, the publish records of the messages queued after it that lie in
/// the next <see cref="WindowBytes"/> of the log come with it, checked record by record (the store's checksum and
/// length, then kind and message id), and wait in a window for their deliveries. One read of the log instead of one
/// per message.
/// </summary>
/// <remarks>
/// A body that is not in the window, or whose record fails a check, is read on its own as before, so a read ahead can
/// only save reads, never change what is delivered. The window is one per topic; every topic's windows together take
/// at most <see cref="ReadAheadBudget"/> (the engine's, shared); a topic whose window cannot get room reads alone.
/// Its state is guarded by the topic's lock.
/// </remarks>
internal sealed class BodyReadAhead(TopicQueue topic, ILogStore store, ReadAheadBudget budget)
{
    /// <summary>How much of the log one read covers.</summary>
    public const int WindowBytes = 256 * 1024;

    /// <summary>The most messages one read looks for.</summary>
    private const int MaxMessages = 4096;

    /// <summary>Bodies read ahead, by message id.</summary>
    private readonly Dictionary<long, ReadOnlyMemory<byte>> _window = [];

    /// <summary>The highest message id the window was read for.</summary>
    private long _windowLastId;

    /// <summary>Whether the window holds its room in the budget.</summary>
    private bool _reserved;

    /// <summary>The read under way, if any.</summary>
    private Read? _reading;

    /// <summary>
    /// The body of <paramref name="entry"/>, taken from the window, or read with those of the messages after it; null
    /// when it must be read on its own. <paramref name="entry"/> is held by its consumer (out of the topic's queue).
    /// </summary>
    public async ValueTask<ReadOnlyMemory<byte>?> TryReadAsync(MessageEntry entry)
    {
        Read? waitFor = null;
        Read? mine = null;
        lock (topic.SyncRoot)
        {
            if (TryTakeLocked(entry.Id, out var kept))
            {
                return kept;
            }

            if (_reading is { } reading)
            {
                if (!reading.Ids.Contains(entry.Id))
                {
                    return null;
                }

                waitFor = reading;
            }
            else
            {
                mine = StartLocked(entry);
                if (mine is null)
                {
                    return null;
                }
            }
        }

        if (waitFor is not null)
        {
            await waitFor.Done.Task.ConfigureAwait(false);
            lock (topic.SyncRoot)
            {
                // Not "? kept : null": null would become an empty body through ReadOnlyMemory's conversion from arrays.
                if (TryTakeLocked(entry.Id, out var kept))
                {
                    return kept;
                }

                return null;
            }
        }

        return Finish(mine!, entry.Id);
    }

    /// <summary>For a receive that must not wait: the body of <paramref name="id"/> if the window has it.</summary>
    public bool TryTakeLocked(long id, out ReadOnlyMemory<byte> body)
    {
        if (!_window.Remove(id, out body))
        {
            return false;
        }

        budget.CountDelivered();
        if (_window.Count == 0 && _reading is null)
        {
            ReleaseLocked();
        }

        return true;
    }

    /// <summary>A message is gone (acknowledged, purged, moved): its body, if read ahead, is not needed.</summary>
    public void ForgetLocked(long id)
    {
        if (_window.Remove(id) && _window.Count == 0 && _reading is null)
        {
            ReleaseLocked();
        }
    }

    private Read? StartLocked(MessageEntry entry)
    {
        if (_window.Count != 0)
        {
            if (entry.Id < _windowLastId)
            {
                // A message from before the window (NACKed, BACKed, due): the window is still ahead of the queue.
                return null;
            }

            // The queue went past the window: what is left in it will not be delivered from it.
            _window.Clear();
        }

        if (!_reserved && !(_reserved = budget.TryReserve()))
        {
            return null;
        }

        var entries = new List<MessageEntry> { entry };
        topic.UpcomingOnDiskLocked(entries, entry.Address + 1, entry.Address + WindowBytes, MaxMessages);
        if (entries.Count == 1)
        {
            ReleaseLocked();
            return null;
        }

        var read = new Read(entries);
        _reading = read;
        return read;
    }

    /// <summary>Reads the log for <paramref name="read"/> (outside the lock), fills the window and wakes its waiters.</summary>
    private ReadOnlyMemory<byte>? Finish(Read read, long ownId)
    {
        List<(long Id, ReadOnlyMemory<byte> Body)> bodies;
        try
        {
            bodies = ReadBodies(read.Entries);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            // The read ahead is only a shortcut: each body is read alone instead.
            bodies = [];
        }

        ReadOnlyMemory<byte>? own = null;
        lock (topic.SyncRoot)
        {
            _reading = null;
            foreach (var (id, body) in bodies)
            {
                if (id == ownId)
                {
                    own = body;
                    budget.CountDelivered();
                }
                else
                {
                    _window[id] = body;
                }
            }

            _windowLastId = read.Ids.Max();
            if (_window.Count == 0)
            {
                ReleaseLocked();
            }
        }

        read.Done.TrySetResult();
        return own;
    }

    /// <summary>One read of the log for the entries' publish records; the bodies of those that pass every check.</summary>
    private List<(long Id, ReadOnlyMemory<byte> Body)> ReadBodies(List<MessageEntry> entries)
    {
        var records = store.ReadCommittedRecords([.. entries.Select(entry => (entry.Address, LogRecord.PublishLength(topic.NameUtf8.Length, entry.Length)))]);
        var bodies = new List<(long, ReadOnlyMemory<byte>)>(entries.Count);
        for (var i = 0; i < entries.Count; i++)
        {
            if (records[i] is { } record && BodyOf(record, entries[i]) is { } body)
            {
                bodies.Add((entries[i].Id, body));
            }
        }

        return bodies;
    }

    /// <summary>The body in <paramref name="record"/> if it is the publish record of <paramref name="entry"/>.</summary>
    private static ReadOnlyMemory<byte>? BodyOf(byte[] record, in MessageEntry entry)
    {
        try
        {
            var read = LogRecord.Read(record);
            if (read.Kind == LogRecordKind.Publish && read.MessageId == entry.Id && read.Payload.Length == entry.Length)
            {
                return read.Payload;
            }
        }
        catch (InvalidDataException)
        {
            // Not a record this version wrote: read alone, the body meets the same check and says so.
        }

        return null;
    }

    private void ReleaseLocked()
    {
        if (_reserved)
        {
            _reserved = false;
            budget.Release();
        }
    }

    /// <summary>One read ahead: the entries it reads for, and its end, which deliveries of those entries wait for.</summary>
    private sealed class Read(List<MessageEntry> entries)
    {
        public List<MessageEntry> Entries { get; } = entries;

        public HashSet<long> Ids { get; } = [.. entries.Select(static entry => entry.Id)];

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

/// <summary>The room every topic's read-ahead windows share: <paramref name="windows"/> windows at a time.</summary>
internal sealed class ReadAheadBudget(int windows)
{
    private int _free = windows;
    private long _delivered;

    public bool TryReserve()
    {
        while (true)
        {
            var free = Volatile.Read(ref _free);
            if (free <= 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _free, free - 1, free) == free)
            {
                return true;
            }
        }
    }

    public void Release() => Interlocked.Increment(ref _free);

    /// <summary>How many bodies were delivered from read-ahead windows (for tests).</summary>
    public long Delivered => Interlocked.Read(ref _delivered);

    public void CountDelivered() => Interlocked.Increment(ref _delivered);
}
