using System.Collections.Concurrent;
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
    private ReadAheadRead? _reading;

    /// <summary>
    /// The body of <paramref name="entry"/>, taken from the window, or read with those of the messages after it; null
    /// when it must be read on its own. <paramref name="entry"/> is held by its consumer (out of the topic's queue).
    /// </summary>
    public async ValueTask<ReadOnlyMemory<byte>?> TryReadAsync(MessageEntry entry)
    {
        Task? waitFor = null;
        ReadAheadRead? mine = null;
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

                // Its task, not the read: once done, the read is reused (with a new task) by the next.
                waitFor = reading.Done.Task;
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
            await waitFor.ConfigureAwait(false);
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

    private ReadAheadRead? StartLocked(MessageEntry entry)
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

        var read = budget.RentRead();
        read.Entries.Add(entry);
        topic.UpcomingOnDiskLocked(read.Entries, entry.Address + 1, entry.Address + WindowBytes, MaxMessages);
        if (read.Entries.Count == 1)
        {
            budget.ReturnRead(read);
            ReleaseLocked();
            return null;
        }

        foreach (var upcoming in read.Entries)
        {
            read.Ids.Add(upcoming.Id);
        }

        _reading = read;
        return read;
    }

    /// <summary>Reads the log for <paramref name="read"/> (outside the lock), fills the window and wakes its waiters.</summary>
    private ReadOnlyMemory<byte>? Finish(ReadAheadRead read, long ownId)
    {
        List<(long Id, ReadOnlyMemory<byte> Body)> bodies = [];
        ReadOnlyMemory<byte>? own = null;
        try
        {
            bodies = ReadBodies(read.Entries);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            // The read ahead is only a shortcut: each body is read alone instead.
        }
        finally
        {
            // Whatever the read did, it ends here: its waiters read alone what the window does not have, and the next
            // read may start (an unexpected failure goes on to this delivery, whose body is then not read ahead).
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
            budget.ReturnRead(read);
        }

        return own;
    }

    /// <summary>One read of the log for the entries' publish records; the bodies of those that pass every check.</summary>
    private List<(long Id, ReadOnlyMemory<byte> Body)> ReadBodies(List<MessageEntry> entries)
    {
        var wanted = new (long Address, int Length)[entries.Count];
        for (var i = 0; i < wanted.Length; i++)
        {
            wanted[i] = (entries[i].Address, LogRecord.PublishLength(topic.NameUtf8.Length, entries[i].Length));
        }

        var records = store.ReadCommittedRecords(wanted);
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
}

/// <summary>
/// One read ahead: the entries it reads for (and their ids), and its end, which deliveries of those entries wait for.
/// Waiters keep only the task of <see cref="Done"/>, so once that is set the read may serve another.
/// </summary>
internal sealed class ReadAheadRead
{
    public List<MessageEntry> Entries { get; } = [];

    public HashSet<long> Ids { get; } = [];

    public TaskCompletionSource Done { get; private set; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Empties it for another read (a new <see cref="Done"/>: waiters of the last one may still look at theirs).</summary>
    public void Reset()
    {
        Entries.Clear();
        Ids.Clear();
        Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

/// <summary>The room every topic's read-ahead windows share: <paramref name="windows"/> windows at a time.</summary>
internal sealed class ReadAheadBudget(int windows)
{
    /// <summary>How many ended reads are kept for the next ones (each up to about 250 KB: lists of up to 4,096 entries).</summary>
    private const int KeptReads = 4;

    private readonly ConcurrentQueue<ReadAheadRead> _reads = new();
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

    public ReadAheadRead RentRead() => _reads.TryDequeue(out var read) ? read : new ReadAheadRead();

    /// <summary>Gives back a read whose <see cref="ReadAheadRead.Done"/> is set (or that never started).</summary>
    public void ReturnRead(ReadAheadRead read)
    {
        if (_reads.Count < KeptReads)
        {
            read.Reset();
            _reads.Enqueue(read);
        }
    }

    /// <summary>How many bodies were delivered from read-ahead windows (for tests).</summary>
    public long Delivered => Interlocked.Read(ref _delivered);

    public void CountDelivered() => Interlocked.Increment(ref _delivered);
}
