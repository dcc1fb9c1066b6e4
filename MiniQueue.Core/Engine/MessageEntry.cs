namespace MiniQueue.Engine;

/// <summary>
/// The engine's index entry for one message: where its body is and what happened to it.
/// A struct, so queues of them cost no allocation per message.
/// </summary>
/// <param name="Id">The message id, unique and increasing in publish order.</param>
/// <param name="Address">Where the store keeps the message's publish record.</param>
/// <param name="Body">The body, when the engine keeps it in memory (null when the store reads it back).</param>
/// <param name="Length">The body's length in bytes.</param>
/// <param name="DackCount">How many times the message has been DACKed.</param>
internal record struct MessageEntry(long Id, long Address, byte[]? Body, int Length, int DackCount);

/// <summary>The priority of a delayed message: its due time, then the order of the DACKs.</summary>
internal readonly record struct DueKey(long DueTicks, long Sequence) : IComparable<DueKey>
{
    public int CompareTo(DueKey other)
    {
        var byDue = DueTicks.CompareTo(other.DueTicks);
        return byDue != 0 ? byDue : Sequence.CompareTo(other.Sequence);
    }
}

/// <summary>
/// The records a reopened log lost: those at or after <paramref name="From"/> (the reopened log's tail) that belong to
/// messages older than <paramref name="FirstNewId"/> (newer ones were appended after the reopening, at the same addresses).
/// </summary>
internal readonly record struct LostRange(long From, long FirstNewId)
{
    public static LostRange None { get; } = new(long.MaxValue, 0);

    public bool Contains(MessageEntry entry) => entry.Address >= From && entry.Id < FirstNewId;
}
