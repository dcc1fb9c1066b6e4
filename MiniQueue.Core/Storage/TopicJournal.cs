using MiniQueue.Engine;

namespace MiniQueue.Storage;

/// <summary>A publish on its way to becoming visible: its entry, its due time (0: none) and its idempotency key.</summary>
internal readonly record struct PendingPublish(MessageEntry Entry, long DueTicks, IdempotencyKeys.Key? Key);

/// <summary>
/// The storage side of one topic (<see cref="TopicQueue"/> keeps the delivery order and the waiters): it records what
/// happens to the topic's messages, decides when a publish becomes visible (once it is durable, in publish order), keeps or
/// reads back message bodies, and writes the topic's checkpoints. An in-memory engine's journal
/// (<see cref="MemoryJournal"/>) records nothing; a durable one's (<see cref="LogJournal"/>) writes to the log.
/// </summary>
/// <remarks>
/// Every method whose name ends in <c>Locked</c> runs under the topic's lock (<see cref="TopicQueue.SyncRoot"/>), which
/// guards the journal's state too. Records whose loss costs at most a redelivery after a crash (deliveries and
/// settlements) are written on a best-effort basis: a failing store does not stop consumers.
/// </remarks>
internal abstract class TopicJournal
{
    /// <summary>
    /// The copy of a body the engine keeps in memory, made before the topic's lock is taken; null when the body is left
    /// to the store (the body cache is full). Give it back with <see cref="DropBody"/> if the publish does not happen.
    /// </summary>
    public abstract byte[]? KeepBody(ReadOnlyMemory<byte> payload);

    /// <summary>A body <see cref="KeepBody"/> kept for a publish that did not happen.</summary>
    public abstract void DropBody(byte[]? body);

    /// <summary>
    /// Records a publish (with its idempotency key <paramref name="keyUtf8"/> and its due time, when it has them) and
    /// returns its entry. <paramref name="durable"/> completes once it is durable.
    /// </summary>
    /// <exception cref="MiniQueueStoreException">The store did not take it; nothing was recorded as published.</exception>
    public abstract MessageEntry AppendPublishLocked(
        long id, ReadOnlyMemory<byte> payload, byte[]? body, long dueTicks, byte[]? keyUtf8, long now, out long keyAddress, out ValueTask durable);

    /// <summary>
    /// After <see cref="AppendPublishLocked"/>: true when the publish is visible at once (the caller makes it so);
    /// otherwise the journal holds it until it is durable, makes it visible then (and every earlier publish of the topic),
    /// and <paramref name="completion"/> completes, or fails when it could not be made durable.
    /// </summary>
    public abstract bool TrackPublishLocked(PendingPublish publish, ValueTask durable, long started, out ValueTask completion);

    /// <summary>Whether publishes wait to be durable.</summary>
    public abstract bool HasPendingLocked { get; }

    /// <summary>How many publishes wait to be durable.</summary>
    public abstract int PendingCountLocked { get; }

    public abstract void DeliveredLocked(long id);

    /// <summary>An ACK: the message is gone.</summary>
    public abstract void AckedLocked(in MessageEntry entry);

    /// <summary>A NACK, or a lease that passed: the message is back at the front.</summary>
    public abstract void ReturnedLocked(long id);

    public abstract void BackedLocked(long id);

    public abstract void DackedLocked(long id, long dueTicks, int dackCount);

    /// <summary>
    /// A purge discarded <paramref name="discarded"/>; <paramref name="lastId"/> is the topic's last published id. The
    /// result completes once the purge is durable.
    /// </summary>
    /// <exception cref="MiniQueueStoreException">The store did not take it; nothing was discarded.</exception>
    public abstract ValueTask PurgedLocked(IReadOnlyCollection<MessageEntry> discarded, long lastId);

    /// <summary>
    /// Moves a message to the end of another topic (whose journal is <paramref name="target"/>; both locks held). Returns
    /// where the move is recorded (to wait for it with <see cref="WaitForDurableAsync"/>), or -1 when the store did not take it.
    /// </summary>
    public abstract long MovedLocked(in MessageEntry entry, TopicJournal target);

    /// <summary>A message that is gone without a record of its own (the caller recorded why).</summary>
    public abstract void ForgetLocked(in MessageEntry entry);

    /// <summary>Reads back the body of a message the engine does not keep in memory.</summary>
    /// <exception cref="MiniQueueStoreException">The store could not read it.</exception>
    public abstract ValueTask<ReadOnlyMemory<byte>> ReadBodyAsync(MessageEntry entry);

    /// <summary>
    /// For a receive that must not wait for a disk read (<see cref="LocalConsumer.TryReceive"/>): whether the body of
    /// <paramref name="entry"/> is at hand, in memory or read ahead by an earlier call (then <paramref name="readAhead"/>
    /// is it). When it is not, starts reading it ahead (one read at a time per topic) and returns false.
    /// </summary>
    public abstract bool TryBodyAtHandLocked(in MessageEntry entry, out ReadOnlyMemory<byte>? readAhead);

    /// <summary>Completes once what was recorded at <paramref name="address"/> is durable.</summary>
    public abstract ValueTask WaitForDurableAsync(long address, CancellationToken cancellationToken);

    /// <summary>After recovery: the topic's messages, and where the bodies written in parts start.</summary>
    public abstract void RestoreLocked(IEnumerable<MessageEntry> entries, IReadOnlyDictionary<long, long> firstParts);

    /// <summary>
    /// Phase one of a checkpoint: of the topic's messages <paramref name="entries"/> and its pending publishes, those whose
    /// bodies lie before <paramref name="relocateBelow"/> and are not in memory (to be read without the lock).
    /// </summary>
    public abstract List<MessageEntry> BodiesToReadLocked(IEnumerable<MessageEntry> entries, long relocateBelow);

    /// <summary>Whether any of <paramref name="entries"/> or of the pending publishes has its body before <paramref name="address"/>.</summary>
    public abstract bool HasBodiesBeforeLocked(IEnumerable<MessageEntry> entries, long address);

    /// <summary>
    /// Writes a checkpoint of the topic: <paramref name="items"/> (every visible message, in delivery order) then the
    /// pending publishes, and the idempotency <paramref name="keys"/>. The journal's own state follows it at once (bodies
    /// copied forward, lost pending publishes failed); the caller rewrites its entries from the result. Null, writing
    /// nothing, when a body before <paramref name="relocateBelow"/> is neither in memory nor in <paramref name="readBodies"/>.
    /// </summary>
    public abstract CheckpointResult? WriteCheckpointLocked(
        long checkpointId, List<CheckpointItem> items, long relocateBelow, LostRange lost,
        IReadOnlyDictionary<long, ReadOnlyMemory<byte>> readBodies, IEnumerable<IdempotencyKeys.Key> keys);
}
