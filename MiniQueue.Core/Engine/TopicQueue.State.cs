using System.Diagnostics;
using System.Text;
using MiniQueue.Storage;

namespace MiniQueue.Engine;

// The topic's state as a whole: rebuilt on recovery, listed for a checkpoint, and rewritten after one.
internal sealed partial class TopicQueue
{
    /// <summary>Rebuilds the topic from recovered state (entries without bodies: the store reads them back).</summary>
    public void Restore(
        IReadOnlyList<MessageEntry> front, IEnumerable<(MessageEntry Entry, DueKey Key)> delayed, IEnumerable<MessageEntry> ready,
        IReadOnlyDictionary<long, long> firstParts, IReadOnlyDictionary<long, int> deliveries, IReadOnlyList<RecoveredKey> keys,
        long lastId, long dackSequence)
    {
        lock (SyncRoot)
        {
            foreach (var key in keys)
            {
                _keys.Add(Encoding.UTF8.GetString(key.Utf8), key.Utf8, key.PublishedTicks, key.Address, durable: true);
            }

            _keys.Expire(_time.GetUtcNow().UtcTicks);

            foreach (var (id, count) in deliveries)
            {
                _deliveries[id] = count;
            }

            Debug.Assert(_front.Count + _delayed.Count + _ready.Count == 0, "Restore runs on a new topic.");
            for (var i = front.Count - 1; i >= 0; i--)
            {
                _front.Push(front[i]);
            }

            foreach (var (entry, key) in delayed)
            {
                _delayed.Enqueue(entry, key);
            }

            foreach (var entry in ready)
            {
                _ready.Enqueue(entry);
            }

            _journal.RestoreLocked(_front.Concat(_delayed.UnorderedItems.Select(static item => item.Element)).Concat(_ready), firstParts);

            _lastVisibleId = lastId;
            _dackSequence = dackSequence;
            if (!_created)
            {
                _engine.CountTopic();
            }

            _created = true;
            ArmTimerLocked(_time.GetUtcNow().UtcTicks);
        }
    }

    /// <summary>
    /// Phase one of a checkpoint (see <see cref="TryWriteCheckpoint"/>): the messages whose bodies lie before
    /// <paramref name="relocateBelow"/> and are not in memory, so the engine can read them back without the lock.
    /// </summary>
    public List<MessageEntry> CollectBodiesToRead(long relocateBelow)
    {
        lock (SyncRoot)
        {
            return _journal.BodiesToReadLocked(AllEntriesLocked(), relocateBelow);
        }
    }

    /// <summary>
    /// Whether any message of the topic has its body before <paramref name="address"/>, or a remembered idempotency key
    /// its record: a truncation there needs a checkpoint of the topic first.
    /// </summary>
    public bool HasBodiesBefore(long address)
    {
        lock (SyncRoot)
        {
            return _keys.OldestAddress(_time.GetUtcNow().UtcTicks) < address || _journal.HasBodiesBeforeLocked(AllEntriesLocked(), address);
        }
    }

    /// <summary>
    /// Writes the topic's whole state to the log as a checkpoint (see <see cref="TopicJournal.WriteCheckpointLocked"/>),
    /// after copying forward the bodies that lie before <paramref name="relocateBelow"/> (their segments are about to be
    /// freed) and those that a reopened log <paramref name="lost"/>, then follows it: entries point at the copies, and
    /// the messages it dropped are gone. A not-yet-durable publish that was lost is dropped: its publisher hears it failed.
    /// A visible message that was lost and whose body is not in memory (possible only when publishes are acknowledged
    /// before the commit) is dropped too.
    /// </summary>
    /// <returns>False, writing nothing, when a body before <paramref name="relocateBelow"/> is neither in memory nor in <paramref name="readBodies"/>.</returns>
    public bool TryWriteCheckpoint(
        long checkpointId, long relocateBelow, LostRange lost, IReadOnlyDictionary<long, ReadOnlyMemory<byte>> readBodies,
        out long endAddress, out int dropped)
    {
        lock (SyncRoot)
        {
            endAddress = 0;
            dropped = 0;
            if (_closed)
            {
                return false;
            }

            var held = _consumers.Where(static consumer => consumer.IsHoldingLocked).OrderBy(static consumer => consumer.HeldLocked.Id).ToArray();

            // In delivery order: held (as delivered), front, due, delayed, ready; the journal adds the publishes not
            // durable yet. Messages set aside for the dead-letter topic stay this topic's until moved: the checkpoint puts
            // them back at the front (a later take sets them aside again).
            var items = new List<CheckpointItem>(CountAll());
            void Add(MessageEntry entry, CheckpointClass kind, long dueTicks) =>
                items.Add(new CheckpointItem(entry, kind, dueTicks, _deliveries.GetValueOrDefault(entry.Id), IsPending: false));
            foreach (var consumer in held)
            {
                Add(consumer.HeldLocked, CheckpointClass.Held, 0);
            }

            foreach (var entry in _outgoing.Concat(_front))
            {
                Add(entry, CheckpointClass.Front, 0);
            }

            foreach (var entry in _due)
            {
                Add(entry, CheckpointClass.Delayed, 0);
            }

            foreach (var (entry, key) in _delayed.UnorderedItems.OrderBy(static item => item.Priority))
            {
                Add(entry, CheckpointClass.Delayed, key.DueTicks);
            }

            foreach (var entry in _ready)
            {
                Add(entry, CheckpointClass.Ready, 0);
            }

            _keys.Expire(_time.GetUtcNow().UtcTicks);
            if (_journal.WriteCheckpointLocked(checkpointId, items, relocateBelow, lost, readBodies, _keys.Durable()) is not { } result)
            {
                return false;
            }

            endAddress = result.EndAddress;
            dropped = result.Gone.Count;
            _keys.Relocate(result.BeginAddress);
            FollowCheckpointLocked(held, result);
            return true;
        }
    }

    /// <summary>After a checkpoint: entries point at the bodies it copied forward, and the messages it dropped are gone.</summary>
    private void FollowCheckpointLocked(LocalConsumer[] held, CheckpointResult result)
    {
        var gone = result.Gone;
        var moved = result.Moved;
        MessageEntry? Rewrite(MessageEntry entry)
        {
            if (gone.Contains(entry.Id))
            {
                ForgetStateLocked(entry);
                return null;
            }

            if (moved.TryGetValue(entry.Id, out var address))
            {
                entry.Address = address;
            }

            return entry;
        }

        foreach (var consumer in held)
        {
            if (Rewrite(consumer.HeldLocked) is { } kept)
            {
                consumer.ReplaceHeldLocked(kept);
            }
            else
            {
                consumer.DropHeldLocked();
                _held--;
            }
        }

        var front = _outgoing.Concat(_front).ToArray();
        _outgoing.Clear();
        _front.Clear();
        foreach (var entry in front.Reverse().Select(Rewrite).OfType<MessageEntry>())
        {
            _front.Push(entry);
        }

        var due = _due.ToArray();
        _due.Clear();
        foreach (var entry in due.Select(Rewrite).OfType<MessageEntry>())
        {
            _due.Enqueue(entry);
        }

        // Taken earliest first (a merge of the lanes), so that they go back in order: into one lane.
        var delayed = new List<(MessageEntry Entry, DueKey Key)>(_delayed.Count);
        while (_delayed.TryDequeue(out var entry, out var key))
        {
            delayed.Add((entry, key));
        }

        foreach (var (entry, key) in delayed)
        {
            if (Rewrite(entry) is { } kept)
            {
                _delayed.Enqueue(kept, key);
            }
        }

        var ready = _ready.ToArray();
        _ready.Clear();
        foreach (var entry in ready.Select(Rewrite).OfType<MessageEntry>())
        {
            _ready.Enqueue(entry);
        }
    }

    /// <summary>How many messages the topic has, whatever their state (a checkpoint writes an entry for each).</summary>
    public int CountAll()
    {
        lock (SyncRoot)
        {
            return _held + _outgoing.Count + _front.Count + _due.Count + _delayed.Count + _ready.Count + _journal.PendingCountLocked;
        }
    }

    /// <summary>Every visible message of the topic: held, set aside, front, due, delayed and ready.</summary>
    private IEnumerable<MessageEntry> AllEntriesLocked() =>
        _consumers.Where(static consumer => consumer.IsHoldingLocked).Select(static consumer => consumer.HeldLocked)
            .Concat(_outgoing).Concat(_front).Concat(_due).Concat(_delayed.UnorderedItems.Select(static item => item.Element)).Concat(_ready);
}
