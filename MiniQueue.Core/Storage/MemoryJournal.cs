using MiniQueue.Engine;

namespace MiniQueue.Storage;

/// <summary>
/// The journal of a topic of an in-memory engine (no <see cref="MiniQueueOptions.DataDirectory"/>): the engine's own
/// memory is the only copy of the queue and nothing outlives the process, so it records nothing, every publish is
/// visible at once and every body stays in memory.
/// </summary>
internal sealed class MemoryJournal : TopicJournal
{
    public static readonly MemoryJournal Instance = new();

    private MemoryJournal()
    {
    }

    public override byte[] KeepBody(ReadOnlyMemory<byte> payload) => payload.ToArray();

    public override void DropBody(byte[]? body)
    {
    }

    public override MessageEntry AppendPublishLocked(
        long id, ReadOnlyMemory<byte> payload, byte[]? body, long dueTicks, byte[]? keyUtf8, long now, out long keyAddress, out ValueTask durable)
    {
        keyAddress = 0;
        durable = default;
        return new MessageEntry(id, 0, body, payload.Length, 0);
    }

    public override bool TrackPublishLocked(PendingPublish publish, ValueTask durable, long started, out ValueTask completion)
    {
        completion = default;
        return true;
    }

    public override bool HasPendingLocked => false;

    public override int PendingCountLocked => 0;

    public override void DeliveredLocked(long id)
    {
    }

    public override void AckedLocked(in MessageEntry entry)
    {
    }

    public override void ReturnedLocked(long id)
    {
    }

    public override void BackedLocked(long id)
    {
    }

    public override void DackedLocked(long id, long dueTicks, int dackCount)
    {
    }

    public override ValueTask PurgedLocked(IReadOnlyCollection<MessageEntry> discarded, long lastId) => default;

    public override long MovedLocked(in MessageEntry entry, TopicJournal target) => 0;

    public override void ForgetLocked(in MessageEntry entry)
    {
    }

    public override ValueTask<ReadOnlyMemory<byte>> ReadBodyAsync(MessageEntry entry) =>
        throw new InvalidOperationException("An in-memory engine keeps every body in memory.");

    public override bool TryBodyAtHandLocked(in MessageEntry entry, out ReadOnlyMemory<byte>? readAhead)
    {
        readAhead = null;
        return true;
    }

    public override ValueTask WaitForDurableAsync(long address, CancellationToken cancellationToken) => default;

    public override void RestoreLocked(IEnumerable<MessageEntry> entries, IReadOnlyDictionary<long, long> firstParts) =>
        throw new InvalidOperationException("An in-memory engine has nothing to recover.");

    public override List<MessageEntry> BodiesToReadLocked(IEnumerable<MessageEntry> entries, long relocateBelow) => [];

    public override bool HasBodiesBeforeLocked(IEnumerable<MessageEntry> entries, long address) => false;

    public override CheckpointResult? WriteCheckpointLocked(
        long checkpointId, List<CheckpointItem> items, long relocateBelow, LostRange lost,
        IReadOnlyDictionary<long, ReadOnlyMemory<byte>> readBodies, IEnumerable<IdempotencyKeys.Key> keys) =>
        throw new InvalidOperationException("An in-memory engine writes no checkpoints.");
}
