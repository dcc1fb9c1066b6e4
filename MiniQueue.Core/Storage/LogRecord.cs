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
}

/// <summary>
/// One state change, as the engine writes it to its store and reads it back on recovery.
/// The encoding is little-endian: <c>[kind:1][id:8]</c>, then for Publish <c>[topicLength:1][topic][payload]</c>,
/// for Dack <c>[dueTicks:8][dackCount:4]</c>, for Purge <c>[topicLength:1][topic]</c>.
/// Topics travel as UTF-8 of at most 255 bytes and are never parsed.
/// </summary>
internal readonly struct LogRecord
{
    private const int HeaderLength = 1 + sizeof(long);

    private LogRecord(LogRecordKind kind, long messageId, ReadOnlyMemory<byte> topic, ReadOnlyMemory<byte> payload, long dueTicks, int dackCount)
    {
        Kind = kind;
        MessageId = messageId;
        Topic = topic;
        Payload = payload;
        DueTicks = dueTicks;
        DackCount = dackCount;
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

    /// <summary>The message's dackCount after this delay (Dack).</summary>
    public int DackCount { get; }

    public int SerializedLength => Kind switch
    {
        LogRecordKind.Publish => HeaderLength + 1 + Topic.Length + Payload.Length,
        LogRecordKind.Dack => HeaderLength + sizeof(long) + sizeof(int),
        LogRecordKind.Purge => HeaderLength + 1 + Topic.Length,
        _ => HeaderLength,
    };

    public static LogRecord Publish(long messageId, ReadOnlyMemory<byte> topic, ReadOnlyMemory<byte> payload) =>
        new(LogRecordKind.Publish, messageId, topic, payload, 0, 0);

    public static LogRecord Deliver(long messageId) => new(LogRecordKind.Deliver, messageId, default, default, 0, 0);

    public static LogRecord Ack(long messageId) => new(LogRecordKind.Ack, messageId, default, default, 0, 0);

    public static LogRecord Nack(long messageId) => new(LogRecordKind.Nack, messageId, default, default, 0, 0);

    public static LogRecord Back(long messageId) => new(LogRecordKind.Back, messageId, default, default, 0, 0);

    public static LogRecord Dack(long messageId, long dueTicks, int dackCount) =>
        new(LogRecordKind.Dack, messageId, default, default, dueTicks, dackCount);

    public static LogRecord Purge(ReadOnlyMemory<byte> topic, long upToMessageId) =>
        new(LogRecordKind.Purge, upToMessageId, topic, default, 0, 0);

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
            case LogRecordKind.Purge:
                rest[0] = checked((byte)Topic.Length);
                Topic.Span.CopyTo(rest[1..]);
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
            case LogRecordKind.Publish or LogRecordKind.Purge:
                if (rest.Length < 1 || rest.Length < 1 + rest.Span[0])
                {
                    throw Corrupt(data.Length);
                }

                var topicLength = rest.Span[0];
                var topic = rest.Slice(1, topicLength);
                if (kind == LogRecordKind.Purge)
                {
                    return rest.Length == 1 + topicLength ? Purge(topic, id) : throw Corrupt(data.Length);
                }

                return Publish(id, topic, rest[(1 + topicLength)..]);
            case LogRecordKind.Dack:
                return rest.Length == sizeof(long) + sizeof(int)
                    ? Dack(id, BinaryPrimitives.ReadInt64LittleEndian(rest.Span), BinaryPrimitives.ReadInt32LittleEndian(rest.Span[sizeof(long)..]))
                    : throw Corrupt(data.Length);
            case LogRecordKind.Deliver or LogRecordKind.Ack or LogRecordKind.Nack or LogRecordKind.Back:
                return rest.Length == 0 ? new LogRecord(kind, id, default, default, 0, 0) : throw Corrupt(data.Length);
            default:
                throw new InvalidDataException($"Unknown log record kind {(byte)kind}.");
        }
    }

    private static InvalidDataException Corrupt(int length) => new($"A log record of {length} bytes is malformed.");
}
