using System.Buffers.Binary;

namespace MiniQueue.Storage;

/// <summary>The kinds of state change the engine writes to its store.</summary>
internal enum LogRecordKind : byte
{
    /// <summary>A message was published: its id, topic and payload.</summary>
    Publish = 1,

    /// <summary>A message was handed to a consumer, which now holds it.</summary>
    Deliver = 2,

    /// <summary>A held message is done and gone for good.</summary>
    Ack = 3,

    /// <summary>A message went back to the front of its topic.</summary>
    Nack = 4,

    /// <summary>A held message went back to the back of its topic.</summary>
    Back = 5,

    /// <summary>A held message was delayed: its due time and new dackCount.</summary>
    Dack = 6,

    /// <summary>A topic's ready and delayed messages with ids up to <see cref="LogRecord.MessageId"/> were discarded.</summary>
    Purge = 7,

    /// <summary>
    /// The start of a checkpoint of one topic (id in <see cref="LogRecord.MessageId"/>): its whole state follows in
    /// <see cref="CheckpointEntries"/> records and replaces what replay built so far once <see cref="CheckpointEnd"/> arrives.
    /// </summary>
    CheckpointBegin = 8,

    /// <summary>Some of a checkpoint's messages, in delivery order (see <see cref="CheckpointEntry"/>).</summary>
    CheckpointEntries = 9,

    /// <summary>The end of a checkpoint: it is complete and takes effect.</summary>
    CheckpointEnd = 10,

    /// <summary>
    /// A part of a message body too large for one log page, written before the <see cref="PublishLarge"/> record that
    /// ends it: its index among the parts and its bytes. Replay ignores parts; reading the body gathers them.
    /// </summary>
    PublishPart = 11,

    /// <summary>
    /// A message was published whose body is larger than a log page: like <see cref="Publish"/>, with the body's total
    /// length, the addresses of its parts (in order) and the body's last bytes.
    /// </summary>
    PublishLarge = 12,

    /// <summary>
    /// The due time of a message published with a delay (format 2), written just before its publish record: replay makes
    /// the message delayed until then, with a dackCount of 0. Without the publish record that follows, it means nothing.
    /// </summary>
    Schedule = 13,

    /// <summary>
    /// A message moved, with its body, to the end of another topic (format 2): to its dead-letter topic after its last
    /// allowed delivery, or back by a redrive. It arrives there as a new message: dackCount and delivery count 0.
    /// </summary>
    Move = 14,

    /// <summary>
    /// Some of a checkpoint's messages, in delivery order, with their delivery counts (format 2; see
    /// <see cref="CheckpointEntry"/>). Format 1 wrote <see cref="CheckpointEntries"/>, without the counts.
    /// </summary>
    CheckpointEntriesCounted = 15,

    /// <summary>
    /// The idempotency key of a publish (format 2), written just before its publish record: when it was published (UTC
    /// ticks) and the key's UTF-8. Without the publish record that follows, it means nothing.
    /// </summary>
    IdempotencyKey = 16,

    /// <summary>
    /// The idempotency keys a topic remembers, as part of a checkpoint (format 2): entries of
    /// <c>[published ticks:8][key length:1][key]</c>. They replace the topic's keys when the checkpoint ends.
    /// </summary>
    CheckpointKeys = 17,
}

/// <summary>Where a message stands in a topic, as a checkpoint records it.</summary>
internal enum CheckpointClass : byte
{
    /// <summary>A consumer holds it.</summary>
    Held = 0,

    /// <summary>It was NACKed (or returned) to the front.</summary>
    Front = 1,

    /// <summary>It was DACKed; <see cref="CheckpointEntry.DueTicks"/> says when it is due.</summary>
    Delayed = 2,

    /// <summary>It waits in FIFO order.</summary>
    Ready = 3,
}

/// <summary>One message in a checkpoint: where its body is, where it stands and how often it was delivered.</summary>
internal readonly record struct CheckpointEntry(long Id, long Address, int Length, int DackCount, CheckpointClass Class, long DueTicks, int Deliveries = 0)
{
    /// <summary>The size of an entry of format 1 (<see cref="LogRecordKind.CheckpointEntries"/>), without the delivery count.</summary>
    public const int Format1Size = sizeof(long) + sizeof(long) + sizeof(int) + sizeof(int) + 1 + sizeof(long);

    /// <summary>The size of an entry as this version writes it (<see cref="LogRecordKind.CheckpointEntriesCounted"/>).</summary>
    public const int Size = Format1Size + sizeof(int);

    /// <summary>The size of an entry in a record of <paramref name="kind"/>.</summary>
    public static int SizeIn(LogRecordKind kind) => kind == LogRecordKind.CheckpointEntries ? Format1Size : Size;

    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteInt64LittleEndian(destination, Id);
        BinaryPrimitives.WriteInt64LittleEndian(destination[8..], Address);
        BinaryPrimitives.WriteInt32LittleEndian(destination[16..], Length);
        BinaryPrimitives.WriteInt32LittleEndian(destination[20..], DackCount);
        destination[24] = (byte)Class;
        BinaryPrimitives.WriteInt64LittleEndian(destination[25..], DueTicks);
        BinaryPrimitives.WriteInt32LittleEndian(destination[Format1Size..], Deliveries);
    }

    /// <summary>Reads an entry of a record of <paramref name="kind"/> (format 1 entries have no delivery count).</summary>
    public static CheckpointEntry Read(ReadOnlySpan<byte> source, LogRecordKind kind = LogRecordKind.CheckpointEntriesCounted)
    {
        var entryClass = (CheckpointClass)source[24];
        if (entryClass > CheckpointClass.Ready)
        {
            throw new InvalidDataException($"Unknown checkpoint class {(byte)entryClass}.");
        }

        return new CheckpointEntry(
            BinaryPrimitives.ReadInt64LittleEndian(source),
            BinaryPrimitives.ReadInt64LittleEndian(source[8..]),
            BinaryPrimitives.ReadInt32LittleEndian(source[16..]),
            BinaryPrimitives.ReadInt32LittleEndian(source[20..]),
            entryClass,
            BinaryPrimitives.ReadInt64LittleEndian(source[25..]),
            kind == LogRecordKind.CheckpointEntries ? 0 : BinaryPrimitives.ReadInt32LittleEndian(source[Format1Size..]));
    }
}

/// <summary>
/// One state change, as the engine writes it to its store and reads it back on recovery.
/// The encoding is little-endian: <c>[kind:1][id:8]</c>, then for Publish <c>[topicLength:1][topic][payload]</c>,
/// for Dack <c>[dueTicks:8][dackCount:4]</c>, for Schedule <c>[dueTicks:8]</c>, for Purge and Move <c>[topicLength:1][topic]</c>.
/// Topics travel as UTF-8 of at most 255 bytes and are never parsed. CheckpointBegin is <c>[kind][checkpoint id][topicLength:1][topic]</c>,
/// CheckpointEntries is <c>[kind][checkpoint id][entries of <see cref="CheckpointEntry.Size"/> bytes]</c> and CheckpointEnd is
/// <c>[kind][checkpoint id]</c>. PublishPart is <c>[kind][id][index:2][bytes]</c>; PublishLarge is
/// <c>[kind][id][topicLength:1][topic][totalLength:4][partCount:2][part addresses:8 each][last bytes]</c>.
/// </summary>
internal readonly struct LogRecord
{
    private const int HeaderLength = 1 + sizeof(long);

    /// <summary>The most bytes a publish record adds to its payload: the header and the longest topic.</summary>
    public const int MaxPublishOverhead = HeaderLength + 1 + TopicName.MaxUtf8Bytes;

    private const int PartHeaderLength = HeaderLength + sizeof(ushort);

    private LogRecord(
        LogRecordKind kind, long messageId, ReadOnlyMemory<byte> topic, ReadOnlyMemory<byte> payload, long dueTicks, int dackCount,
        ReadOnlyMemory<byte> parts = default, int totalLength = 0)
    {
        Kind = kind;
        MessageId = messageId;
        Topic = topic;
        Payload = payload;
        DueTicks = dueTicks;
        DackCount = dackCount;
        Parts = parts;
        TotalLength = totalLength;
    }

    public LogRecordKind Kind { get; }

    /// <summary>The message the record is about; for Purge, the highest id it discards.</summary>
    public long MessageId { get; }

    /// <summary>The topic's UTF-8 name (Publish and Purge).</summary>
    public ReadOnlyMemory<byte> Topic { get; }

    /// <summary>The message body (Publish).</summary>
    public ReadOnlyMemory<byte> Payload { get; }

    /// <summary>When a delayed message comes due, in UTC ticks (Dack).</summary>
    public long DueTicks { get; }

    /// <summary>The message's dackCount after this delay (Dack); the part's index (PublishPart).</summary>
    public int DackCount { get; }

    /// <summary>The addresses of the body's parts, 8 bytes each, little-endian (PublishLarge).</summary>
    public ReadOnlyMemory<byte> Parts { get; }

    /// <summary>The whole body's length (PublishLarge).</summary>
    public int TotalLength { get; }

    /// <summary>How many parts precede a PublishLarge record.</summary>
    public int PartCount => Parts.Length / sizeof(long);

    /// <summary>The address of part <paramref name="index"/> (PublishLarge).</summary>
    public long PartAddress(int index) => BinaryPrimitives.ReadInt64LittleEndian(Parts.Span[(index * sizeof(long))..]);

    /// <summary>The body's length: the whole of it for PublishLarge, the payload otherwise.</summary>
    public int BodyLength => Kind == LogRecordKind.PublishLarge ? TotalLength : Payload.Length;

    public int SerializedLength => Kind switch
    {
        LogRecordKind.Publish => PublishLength(Topic.Length, Payload.Length),
        LogRecordKind.Dack => HeaderLength + sizeof(long) + sizeof(int),
        LogRecordKind.Schedule => HeaderLength + sizeof(long),
        LogRecordKind.IdempotencyKey => HeaderLength + sizeof(long) + Payload.Length,
        LogRecordKind.CheckpointKeys => HeaderLength + Payload.Length,
        LogRecordKind.Purge or LogRecordKind.CheckpointBegin or LogRecordKind.Move => HeaderLength + 1 + Topic.Length,
        LogRecordKind.CheckpointEntries or LogRecordKind.CheckpointEntriesCounted => HeaderLength + Payload.Length,
        LogRecordKind.PublishPart => PartHeaderLength + Payload.Length,
        LogRecordKind.PublishLarge => LargeHeaderLength(Topic.Length, PartCount) + Payload.Length,
        _ => HeaderLength,
    };

    /// <summary>The length of a CheckpointBegin record for a topic of <paramref name="topicLength"/> bytes.</summary>
    public static int CheckpointBeginLength(int topicLength) => HeaderLength + 1 + topicLength;

    /// <summary>The length of a CheckpointEntries record of <paramref name="entries"/> entries.</summary>
    public static int CheckpointEntriesLength(int entries) => HeaderLength + (entries * CheckpointEntry.Size);

    /// <summary>The length of a CheckpointEnd record.</summary>
    public const int CheckpointEndLength = HeaderLength;

    /// <summary>The length of a part record with <paramref name="bytes"/> bytes of body.</summary>
    public static int PartLength(int bytes) => PartHeaderLength + bytes;

    /// <summary>The length of a PublishLarge record's header (all but its last bytes) for a topic and part count.</summary>
    public static int LargeHeaderLength(int topicLength, int partCount) => HeaderLength + 1 + topicLength + sizeof(int) + sizeof(ushort) + (partCount * sizeof(long));

    /// <summary>The length of a publish record with a topic and payload of these lengths.</summary>
    public static int PublishLength(int topicLength, int payloadLength) => HeaderLength + 1 + topicLength + payloadLength;

    public static LogRecord Publish(long messageId, ReadOnlyMemory<byte> topic, ReadOnlyMemory<byte> payload) =>
        new(LogRecordKind.Publish, messageId, topic, payload, 0, 0);

    public static LogRecord Deliver(long messageId) => new(LogRecordKind.Deliver, messageId, default, default, 0, 0);

    public static LogRecord Ack(long messageId) => new(LogRecordKind.Ack, messageId, default, default, 0, 0);

    public static LogRecord Nack(long messageId) => new(LogRecordKind.Nack, messageId, default, default, 0, 0);

    public static LogRecord Back(long messageId) => new(LogRecordKind.Back, messageId, default, default, 0, 0);

    public static LogRecord Dack(long messageId, long dueTicks, int dackCount) =>
        new(LogRecordKind.Dack, messageId, default, default, dueTicks, dackCount);

    public static LogRecord Schedule(long messageId, long dueTicks) => new(LogRecordKind.Schedule, messageId, default, default, dueTicks, 0);

    /// <summary>The idempotency key (UTF-8) of the publish of <paramref name="messageId"/>, published at <paramref name="publishedTicks"/>.</summary>
    public static LogRecord IdempotencyKey(long messageId, long publishedTicks, ReadOnlyMemory<byte> key) =>
        new(LogRecordKind.IdempotencyKey, messageId, default, key, publishedTicks, 0);

    /// <summary>Checkpoint keys; <paramref name="entries"/> holds whole <c>[ticks:8][length:1][key]</c> entries.</summary>
    public static LogRecord CheckpointKeys(long checkpointId, ReadOnlyMemory<byte> entries) =>
        new(LogRecordKind.CheckpointKeys, checkpointId, default, entries, 0, 0);

    /// <summary>The length of a checkpoint-keys entry for a key of <paramref name="keyLength"/> bytes.</summary>
    public static int KeyEntryLength(int keyLength) => sizeof(long) + 1 + keyLength;

    /// <summary>The length of a CheckpointKeys record whose entries take <paramref name="entryBytes"/> bytes.</summary>
    public static int CheckpointKeysLength(int entryBytes) => HeaderLength + entryBytes;

    /// <summary>Message <paramref name="messageId"/> moves to the end of <paramref name="topic"/>.</summary>
    public static LogRecord Move(long messageId, ReadOnlyMemory<byte> topic) => new(LogRecordKind.Move, messageId, topic, default, 0, 0);

    public static LogRecord Purge(ReadOnlyMemory<byte> topic, long upToMessageId) =>
        new(LogRecordKind.Purge, upToMessageId, topic, default, 0, 0);

    public static LogRecord CheckpointBegin(long checkpointId, ReadOnlyMemory<byte> topic) =>
        new(LogRecordKind.CheckpointBegin, checkpointId, topic, default, 0, 0);

    /// <summary>A record of checkpoint entries; <paramref name="entries"/> holds whole <see cref="CheckpointEntry"/>s of <see cref="CheckpointEntry.Size"/> bytes.</summary>
    public static LogRecord CheckpointEntries(long checkpointId, ReadOnlyMemory<byte> entries) =>
        new(LogRecordKind.CheckpointEntriesCounted, checkpointId, default, entries, 0, 0);

    public static LogRecord CheckpointEnd(long checkpointId) => new(LogRecordKind.CheckpointEnd, checkpointId, default, default, 0, 0);

    public static LogRecord PublishPart(long messageId, int index, ReadOnlyMemory<byte> bytes) =>
        new(LogRecordKind.PublishPart, messageId, default, bytes, 0, index);

    /// <summary>The end of a large message; <paramref name="parts"/> holds the part addresses, 8 bytes each.</summary>
    public static LogRecord PublishLarge(long messageId, ReadOnlyMemory<byte> topic, int totalLength, ReadOnlyMemory<byte> parts, ReadOnlyMemory<byte> lastBytes) =>
        new(LogRecordKind.PublishLarge, messageId, topic, lastBytes, 0, 0, parts, totalLength);

    /// <summary>Writes the record into <paramref name="destination"/>, which holds at least <see cref="SerializedLength"/> bytes.</summary>
    public void WriteTo(Span<byte> destination)
    {
        destination[0] = (byte)Kind;
        BinaryPrimitives.WriteInt64LittleEndian(destination[1..], MessageId);
        var rest = destination[HeaderLength..];
        switch (Kind)
        {
            case LogRecordKind.Publish:
                rest[0] = checked((byte)Topic.Length);
                Topic.Span.CopyTo(rest[1..]);
                Payload.Span.CopyTo(rest[(1 + Topic.Length)..]);
                break;
            case LogRecordKind.Dack:
                BinaryPrimitives.WriteInt64LittleEndian(rest, DueTicks);
                BinaryPrimitives.WriteInt32LittleEndian(rest[sizeof(long)..], DackCount);
                break;
            case LogRecordKind.Schedule:
                BinaryPrimitives.WriteInt64LittleEndian(rest, DueTicks);
                break;
            case LogRecordKind.IdempotencyKey:
                BinaryPrimitives.WriteInt64LittleEndian(rest, DueTicks);
                Payload.Span.CopyTo(rest[sizeof(long)..]);
                break;
            case LogRecordKind.CheckpointKeys:
                Payload.Span.CopyTo(rest);
                break;
            case LogRecordKind.Purge or LogRecordKind.CheckpointBegin or LogRecordKind.Move:
                rest[0] = checked((byte)Topic.Length);
                Topic.Span.CopyTo(rest[1..]);
                break;
            case LogRecordKind.CheckpointEntries or LogRecordKind.CheckpointEntriesCounted:
                Payload.Span.CopyTo(rest);
                break;
            case LogRecordKind.PublishPart:
                BinaryPrimitives.WriteUInt16LittleEndian(rest, checked((ushort)DackCount));
                Payload.Span.CopyTo(rest[sizeof(ushort)..]);
                break;
            case LogRecordKind.PublishLarge:
                rest[0] = checked((byte)Topic.Length);
                Topic.Span.CopyTo(rest[1..]);
                rest = rest[(1 + Topic.Length)..];
                BinaryPrimitives.WriteInt32LittleEndian(rest, TotalLength);
                BinaryPrimitives.WriteUInt16LittleEndian(rest[sizeof(int)..], checked((ushort)PartCount));
                Parts.Span.CopyTo(rest[(sizeof(int) + sizeof(ushort))..]);
                Payload.Span.CopyTo(rest[(sizeof(int) + sizeof(ushort) + Parts.Length)..]);
                break;
        }
    }

    public byte[] ToArray()
    {
        var bytes = new byte[SerializedLength];
        WriteTo(bytes);
        return bytes;
    }

    /// <summary>Reads a record; the topic and payload it returns are slices of <paramref name="data"/>.</summary>
    /// <exception cref="InvalidDataException">The bytes are not a record this version wrote.</exception>
    public static LogRecord Read(ReadOnlyMemory<byte> data)
    {
        var span = data.Span;
        if (span.Length < HeaderLength)
        {
            throw Corrupt(data.Length);
        }

        var kind = (LogRecordKind)span[0];
        var id = BinaryPrimitives.ReadInt64LittleEndian(span[1..]);
        var rest = data[HeaderLength..];
        switch (kind)
        {
            case LogRecordKind.Publish or LogRecordKind.Purge or LogRecordKind.CheckpointBegin or LogRecordKind.Move:
                if (rest.Length < 1 || rest.Length < 1 + rest.Span[0])
                {
                    throw Corrupt(data.Length);
                }

                var topicLength = rest.Span[0];
                var topic = rest.Slice(1, topicLength);
                if (kind == LogRecordKind.Publish)
                {
                    return Publish(id, topic, rest[(1 + topicLength)..]);
                }

                return rest.Length == 1 + topicLength ? new LogRecord(kind, id, topic, default, 0, 0) : throw Corrupt(data.Length);
            case LogRecordKind.CheckpointEntries or LogRecordKind.CheckpointEntriesCounted:
                return rest.Length % CheckpointEntry.SizeIn(kind) == 0 ? new LogRecord(kind, id, default, rest, 0, 0) : throw Corrupt(data.Length);
            case LogRecordKind.PublishPart:
                return rest.Length >= sizeof(ushort)
                    ? PublishPart(id, BinaryPrimitives.ReadUInt16LittleEndian(rest.Span), rest[sizeof(ushort)..])
                    : throw Corrupt(data.Length);
            case LogRecordKind.PublishLarge:
                return ReadLarge(id, rest, data.Length);
            case LogRecordKind.Dack:
                return rest.Length == sizeof(long) + sizeof(int)
                    ? Dack(id, BinaryPrimitives.ReadInt64LittleEndian(rest.Span), BinaryPrimitives.ReadInt32LittleEndian(rest.Span[sizeof(long)..]))
                    : throw Corrupt(data.Length);
            case LogRecordKind.Schedule:
                return rest.Length == sizeof(long) ? Schedule(id, BinaryPrimitives.ReadInt64LittleEndian(rest.Span)) : throw Corrupt(data.Length);
            case LogRecordKind.IdempotencyKey:
                return rest.Length is > sizeof(long) and <= sizeof(long) + 255
                    ? IdempotencyKey(id, BinaryPrimitives.ReadInt64LittleEndian(rest.Span), rest[sizeof(long)..])
                    : throw Corrupt(data.Length);
            case LogRecordKind.CheckpointKeys:
                return CheckpointKeys(id, rest);
            case LogRecordKind.Deliver or LogRecordKind.Ack or LogRecordKind.Nack or LogRecordKind.Back or LogRecordKind.CheckpointEnd:
                return rest.Length == 0 ? new LogRecord(kind, id, default, default, 0, 0) : throw Corrupt(data.Length);
            default:
                throw new InvalidDataException($"Unknown log record kind {(byte)kind}.");
        }
    }

    private static LogRecord ReadLarge(long id, ReadOnlyMemory<byte> rest, int recordLength)
    {
        if (rest.Length < 1 || rest.Length < 1 + rest.Span[0] + sizeof(int) + sizeof(ushort))
        {
            throw Corrupt(recordLength);
        }

        var topic = rest.Slice(1, rest.Span[0]);
        rest = rest[(1 + topic.Length)..];
        var total = BinaryPrimitives.ReadInt32LittleEndian(rest.Span);
        var count = BinaryPrimitives.ReadUInt16LittleEndian(rest.Span[sizeof(int)..]);
        rest = rest[(sizeof(int) + sizeof(ushort))..];
        if (rest.Length < count * sizeof(long) || total < rest.Length - (count * sizeof(long)))
        {
            throw Corrupt(recordLength);
        }

        return PublishLarge(id, topic, total, rest[..(count * sizeof(long))], rest[(count * sizeof(long))..]);
    }

    private static InvalidDataException Corrupt(int length) => new($"A log record of {length} bytes is malformed.");
}
