namespace MiniQueue.Engine;

// Moving messages between topics: to the dead-letter topic after their last allowed delivery, and back by a redrive.
internal sealed partial class TopicQueue
{
    /// <summary>
    /// Moves the messages set aside for the dead-letter topic <paramref name="deadLetter"/> there, one Move record each.
    /// The caller holds both topics' locks. A message the store does not take returns to the front of this topic.
    /// </summary>
    public void ShipOutgoingLocked(TopicQueue deadLetter, ref LocalConsumer? toComplete)
    {
        _moveScheduled = false;
        if (_closed || deadLetter._closed)
        {
            return;
        }

        var shipped = 0;
        foreach (var entry in _outgoing)
        {
            if (!TryMoveLocked(entry, deadLetter, ref toComplete))
            {
                // The store failed: the rest stays here, for a later take to retry.
                break;
            }

            var deliveries = _deliveries.GetValueOrDefault(entry.Id);
            _deliveries.Remove(entry.Id);
            _engine.Metrics.DeadLettered(Name);
            EngineLog.DeadLettered(_engine.Logger, Name, entry.Id, deliveries, deadLetter.Name);
            shipped++;
        }

        _outgoing.RemoveRange(0, shipped);
        ReturnOutgoingLocked();
    }

    /// <summary>A move to the dead-letter topic failed: the messages set aside return to the front.</summary>
    public void AbandonMove()
    {
        lock (SyncRoot)
        {
            ReturnOutgoingLocked();
            _moveScheduled = false;
        }
    }

    /// <summary>Puts the messages still set aside back at the front, in the order they were taken.</summary>
    private void ReturnOutgoingLocked()
    {
        for (var i = _outgoing.Count - 1; i >= 0; i--)
        {
            _front.Push(_outgoing[i]);
        }

        _outgoing.Clear();
    }

    /// <summary>
    /// Redrive: moves every message of this topic that is not held (in delivery order) to the end of
    /// <paramref name="target"/>. The caller holds both topics' locks. Returns how many moved;
    /// <paramref name="lastAddress"/> is the last Move record's, for the caller to wait for its commit.
    /// </summary>
    public int RedriveLocked(TopicQueue target, ref LocalConsumer? toComplete, out long lastAddress)
    {
        lastAddress = -1;
        ThrowIfClosedLocked();
        target.ThrowIfClosedLocked();
        PromoteDueLocked(_time.GetUtcNow().UtcTicks);
        var moved = 0;
        while (TakeNextLocked(out var entry) || TakeDelayedLocked(out entry))
        {
            if (!TryMoveLocked(entry, target, ref toComplete, out lastAddress))
            {
                _front.Push(entry);
                throw new MiniQueueStoreException($"The store did not take the move of message {entry.Id} from topic '{Name}' to '{target.Name}'; {moved} moved before it.");
            }

            _deliveries.Remove(entry.Id);
            moved++;
        }

        return moved;
    }

    /// <summary>The delayed message due first, taken before it is due (for a redrive, which moves them all).</summary>
    private bool TakeDelayedLocked(out MessageEntry entry) => _delayed.TryDequeue(out entry, out _);

    private bool TryMoveLocked(MessageEntry entry, TopicQueue target, ref LocalConsumer? toComplete) =>
        TryMoveLocked(entry, target, ref toComplete, out _);

    /// <summary>
    /// Moves a message this topic no longer lists to the end of <paramref name="target"/> (both locks held): the journal
    /// records the move, then the message takes its place there. False when the store did not take the record.
    /// </summary>
    private bool TryMoveLocked(MessageEntry entry, TopicQueue target, ref LocalConsumer? toComplete, out long address)
    {
        address = _journal.MovedLocked(entry, target._journal);
        if (address < 0)
        {
            return false;
        }

        target.AcceptMovedLocked(entry with { DackCount = 0 }, ref toComplete);
        return true;
    }

    /// <summary>A message moved in from another topic (both locks held): it joins the end of the FIFO messages.</summary>
    private void AcceptMovedLocked(MessageEntry entry, ref LocalConsumer? toComplete)
    {
        if (!_created)
        {
            _engine.CountTopic();
        }

        _created = true;
        _ready.Enqueue(entry);
        DispatchLocked(ref toComplete);
    }

    /// <summary>Completes once the move recorded at <paramref name="address"/> (see <see cref="RedriveLocked"/>) is durable.</summary>
    public ValueTask WaitForMoveAsync(long address, CancellationToken cancellationToken) => _journal.WaitForDurableAsync(address, cancellationToken);
}
