using MiniQueue.Engine;

namespace MiniQueue.Storage;

/// <summary>One message as a checkpoint writes it.</summary>
/// <param name="Entry">The message's index entry (its body too, when it is in memory).</param>
/// <param name="Class">Where it stands in its topic.</param>
/// <param name="DueTicks">When it comes due, for a delayed message not due yet; 0 otherwise.</param>
/// <param name="Deliveries">How many times it was delivered.</param>
/// <param name="IsPending">Its publish is not durable yet (a reopened log may have lost it).</param>
internal readonly record struct CheckpointItem(MessageEntry Entry, CheckpointClass Class, long DueTicks, int Deliveries, bool IsPending);

/// <summary>What a checkpoint did: the bodies it copied forward, the messages it dropped, and where its records are.</summary>
internal sealed class CheckpointResult
{
    /// <summary>The new address of the publish record of each message whose body was copied forward, by id.</summary>
    public Dictionary<long, long> Moved { get; } = [];

    /// <summary>The new first part of each copied body written in parts, by id.</summary>
    public Dictionary<long, long> MovedFirst { get; } = [];

    /// <summary>The messages the checkpoint dropped: lost pending publishes, and bodies it had no copy of.</summary>
    public HashSet<long> Gone { get; } = [];

    public long BeginAddress { get; set; }

    public long EndAddress { get; set; }
}

/// <summary>
/// Writes a checkpoint of one topic: copies forward the bodies that lie before the truncation point (or that a reopened
/// log lost), then the topic's whole state (every message, in delivery order, and its idempotency keys) between a
/// CheckpointBegin and a CheckpointEnd record. Replay replaces what it knew of the topic with it once the end arrives.
/// </summary>
internal static class CheckpointWriter
{
    /// <summary>How many checkpoint entries one record carries.</summary>
    public const int EntriesPerRecord = 1024;

    /// <summary>How many bytes of idempotency keys one record carries at most (it must fit a log page).</summary>
    public const int KeysPerRecordBytes = 8 * 1024;

    /// <summary>
    /// Appends the checkpoint. A pending publish in the <paramref name="lost"/> range is dropped (its publisher must hear
    /// it failed); so is a message whose body must be copied but is neither in memory nor in <paramref name="readBodies"/>.
    /// Nothing changes in memory here: the caller applies the result once every record is appended.
    /// <paramref name="firstOf"/> says where a message's body starts in the log (its first part, or its publish record).
    /// </summary>
    public static CheckpointResult Write(
        ILogStore store, Func<LogRecord, long> append, long checkpointId, byte[] topicUtf8, IReadOnlyList<CheckpointItem> items,
        Func<MessageEntry, long> firstOf, long relocateBelow, LostRange lost, IReadOnlyDictionary<long, ReadOnlyMemory<byte>> readBodies, IEnumerable<IdempotencyKeys.Key> keys)
    {
        var result = new CheckpointResult();
        foreach (var item in items)
        {
            if (item.IsPending && lost.Contains(item.Entry))
            {
                result.Gone.Add(item.Entry.Id);
            }
        }

        // Every copy first: the entries point at the copies.
        foreach (var item in items)
        {
            var entry = item.Entry;
            if (result.Gone.Contains(entry.Id) || (firstOf(entry) >= relocateBelow && !lost.Contains(entry)))
            {
                continue;
            }

            var body = entry.Body ?? (readBodies.TryGetValue(entry.Id, out var read) ? read : (ReadOnlyMemory<byte>?)null);
            if (body is not { } bytes)
            {
                result.Gone.Add(entry.Id);
                continue;
            }

            var record = MessageBodies.WriteParts(store, append, entry.Id, topicUtf8, bytes, out var firstPart);
            result.Moved[entry.Id] = append(record);
            if (firstPart >= 0)
            {
                result.MovedFirst[entry.Id] = firstPart;
            }
        }

        result.BeginAddress = append(LogRecord.CheckpointBegin(checkpointId, topicUtf8));
        var buffer = new byte[EntriesPerRecord * CheckpointEntry.Size];
        var count = 0;
        foreach (var item in items)
        {
            var entry = item.Entry;
            if (result.Gone.Contains(entry.Id))
            {
                continue;
            }

            var address = result.Moved.TryGetValue(entry.Id, out var moved) ? moved : entry.Address;
            new CheckpointEntry(entry.Id, address, entry.Length, entry.DackCount, item.Class, item.DueTicks, item.Deliveries)
                .WriteTo(buffer.AsSpan(count * CheckpointEntry.Size));
            if (++count == EntriesPerRecord)
            {
                append(LogRecord.CheckpointEntries(checkpointId, buffer.AsMemory(0, count * CheckpointEntry.Size)));
                count = 0;
            }
        }

        if (count > 0)
        {
            append(LogRecord.CheckpointEntries(checkpointId, buffer.AsMemory(0, count * CheckpointEntry.Size)));
        }

        // The idempotency keys the topic remembers outlive their messages' records: the checkpoint carries them.
        foreach (var chunk in IdempotencyKeys.Encode(keys, KeysPerRecordBytes))
        {
            append(LogRecord.CheckpointKeys(checkpointId, chunk));
        }

        result.EndAddress = append(LogRecord.CheckpointEnd(checkpointId));
        return result;
    }

    /// <summary>How much of the store's address space a checkpoint of a topic with <paramref name="messages"/> messages takes.</summary>
    public static long Footprint(ILogStore store, int topicLength, int messages)
    {
        var full = messages / EntriesPerRecord;
        var rest = messages % EntriesPerRecord;
        return store.FootprintOf(LogRecord.CheckpointBeginLength(topicLength))
            + (full * store.FootprintOf(LogRecord.CheckpointEntriesLength(EntriesPerRecord)))
            + (rest > 0 ? store.FootprintOf(LogRecord.CheckpointEntriesLength(rest)) : 0)
            + store.FootprintOf(LogRecord.CheckpointEndLength);
    }
}
