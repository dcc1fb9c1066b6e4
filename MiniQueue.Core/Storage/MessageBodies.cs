namespace MiniQueue.Storage;

/// <summary>
/// How a message body goes into the store's log and comes back. A body that fits one record (a log page, less
/// headers) is one <see cref="LogRecordKind.Publish"/> record. A larger one is split: <see cref="LogRecordKind.PublishPart"/>
/// records carry its first bytes, then a <see cref="LogRecordKind.PublishLarge"/> record lists their addresses and
/// carries the last bytes. So the log's page size, and its write buffer, need not grow with the largest message.
/// </summary>
internal static class MessageBodies
{
    /// <summary>
    /// How a body of <paramref name="length"/> bytes is split under a store's record limit: the number of parts before
    /// the final record (0: one plain publish record) and the bytes of body each part holds.
    /// </summary>
    public static (int Parts, int PartBytes, int LastBytes) Split(int recordLimit, int topicLength, int length)
    {
        if (recordLimit <= 0 || LogRecord.PublishLength(topicLength, length) <= recordLimit)
        {
            return (0, 0, length);
        }

        var partBytes = recordLimit - LogRecord.PartLength(0);
        for (var parts = 1; ; parts++)
        {
            var lastCapacity = recordLimit - LogRecord.LargeHeaderLength(topicLength, parts);
            if (lastCapacity < 0 || partBytes <= 0)
            {
                throw new MiniQueueStoreException($"A body of {length} bytes cannot be split into records of at most {recordLimit} bytes.");
            }

            // The final record takes as much of the end as it can; parts of partBytes each (the last one shorter) the rest.
            // Fewer parts leave more room in the final record, so the first count that fits needs all its parts.
            var last = Math.Min(length, lastCapacity);
            var needed = (int)((length - last + (long)partBytes - 1) / partBytes);
            if (needed <= parts)
            {
                return (parts, partBytes, last);
            }
        }
    }

    /// <summary>How much of the store's address space a body of <paramref name="length"/> bytes takes, parts included.</summary>
    public static long Footprint(ILogStore store, int topicLength, int length)
    {
        var (parts, partBytes, last) = Split(store.RecordLimit, topicLength, length);
        if (parts == 0)
        {
            return store.FootprintOf(LogRecord.PublishLength(topicLength, length));
        }

        var partsLength = length - last;
        var footprint = store.FootprintOf(LogRecord.LargeHeaderLength(topicLength, parts) + last);
        for (var part = 0; part < parts; part++)
        {
            footprint += store.FootprintOf(LogRecord.PartLength(Math.Min(partBytes, partsLength - (part * partBytes))));
        }

        return footprint;
    }

    /// <summary>
    /// Appends the parts of a body too large for one record (nothing for one that fits) and returns the record that
    /// publishes it, for the caller to append, and the address of its first part (-1 when it has none).
    /// </summary>
    public static LogRecord WriteParts(ILogStore store, Func<LogRecord, long> append, long id, ReadOnlyMemory<byte> topic, ReadOnlyMemory<byte> body, out long firstPart)
    {
        var (parts, partBytes, last) = Split(store.RecordLimit, topic.Length, body.Length);
        firstPart = -1;
        if (parts == 0)
        {
            return LogRecord.Publish(id, topic, body);
        }

        var partsLength = body.Length - last;
        var addresses = new byte[parts * sizeof(long)];
        for (var part = 0; part < parts; part++)
        {
            var start = part * partBytes;
            var address = append(LogRecord.PublishPart(id, part, body.Slice(start, Math.Min(partBytes, partsLength - start))));
            System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(addresses.AsSpan(part * sizeof(long)), address);
            if (part == 0)
            {
                firstPart = address;
            }
        }

        return LogRecord.PublishLarge(id, topic, body.Length, addresses, body[partsLength..]);
    }

    /// <summary>Reads back the body of message <paramref name="id"/> whose publish record is at <paramref name="address"/>.</summary>
    /// <exception cref="MiniQueueStoreException">The store could not read it, or returned something else.</exception>
    public static async ValueTask<ReadOnlyMemory<byte>> ReadAsync(
        ILogStore store, long address, long id, int topicLength, int length, CancellationToken cancellationToken = default)
    {
        var (parts, partBytes, last) = Split(store.RecordLimit, topicLength, length);
        var hint = parts == 0 ? LogRecord.PublishLength(topicLength, length) : LogRecord.LargeHeaderLength(topicLength, parts) + last;
        var record = LogRecord.Read(await store.ReadAsync(address, hint, cancellationToken).ConfigureAwait(false));
        if (record.MessageId != id || record.Kind is not (LogRecordKind.Publish or LogRecordKind.PublishLarge))
        {
            throw new MiniQueueStoreException($"The store returned a {record.Kind} record of message {record.MessageId} for message {id}.");
        }

        if (record.Kind == LogRecordKind.Publish)
        {
            return record.Payload;
        }

        var body = new byte[record.TotalLength];
        var offset = 0;
        for (var part = 0; part < record.PartCount; part++)
        {
            var read = LogRecord.Read(await store.ReadAsync(record.PartAddress(part), LogRecord.PartLength(partBytes), cancellationToken).ConfigureAwait(false));
            if (read.Kind != LogRecordKind.PublishPart || read.DackCount != part || offset + read.Payload.Length > body.Length)
            {
                throw new MiniQueueStoreException($"Part {part} of message {id} is not where its publish record says: the store returned a {read.Kind} record.");
            }

            read.Payload.Span.CopyTo(body.AsSpan(offset));
            offset += read.Payload.Length;
        }

        if (offset + record.Payload.Length != body.Length)
        {
            throw new MiniQueueStoreException($"The parts of message {id} hold {offset + record.Payload.Length} bytes, not {body.Length}.");
        }

        record.Payload.Span.CopyTo(body.AsSpan(offset));
        return body;
    }

    /// <summary>The address of the first part of a <see cref="LogRecordKind.PublishLarge"/> record's body.</summary>
    public static long FirstPart(in LogRecord record) => record.PartCount > 0 ? record.PartAddress(0) : -1;
}
