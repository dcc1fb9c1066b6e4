using System.Runtime.CompilerServices;
using MiniQueue.Engine;

namespace MiniQueue.Storage;

/// <summary>
/// The journal of one topic of a durable engine: every state change is a <see cref="LogRecord"/> in the engine's log
/// (<see cref="ILogStore"/>); a publish becomes visible once its record is durable, in publish order; bodies stay in
/// memory while the <see cref="BodyCache"/> has room and are read back otherwise; the log space the topic's bodies pin
/// is counted in the engine's <see cref="LogSpace"/>, and checkpoints copy them forward before the log is truncated.
/// </summary>
internal sealed class LogJournal : TopicJournal
{
    private readonly TopicQueue _topic;
    private readonly LogStorage _storage;
    private readonly ILogStore _store;
    private readonly LogSpace _space;
    private readonly BodyCache _cache;
    private readonly Func<LogRecord, long> _appendOrThrow;
    private readonly Func<MessageEntry, long> _firstOf;

    /// <summary>Publishes not durable yet, in publish order.</summary>
    private Queue<PendingPublish> _pending = new();

    /// <summary>
    /// Publishes whose record a reopened log lost before they were durable (a checkpoint dropped them): their publishers,
    /// still waiting, must hear that they failed, even though the reopened log commits other records at those addresses.
    /// </summary>
    private readonly HashSet<long> _lostPublishes = [];

    /// <summary>
    /// The highest id a drain of <see cref="_pending"/> made visible (ids rise in publish order). A drain takes every
    /// publish whose record is committed, so the other publishers one commit covered find theirs done here and need
    /// not take the topic's lock (under load one commit covers tens of publishes of a topic, and the lock is the one
    /// publishers append under).
    /// </summary>
    private long _visibleThroughId = -1;

    /// <summary>How many publishes <see cref="_lostPublishes"/> holds; read without the lock.</summary>
    private int _lostCount;

    /// <summary>
    /// Where the bodies of messages larger than one log record start: the address of their first part (by message id).
    /// Their publish record, which <see cref="MessageEntry.Address"/> points to, comes after the parts; the log may be
    /// truncated only before the first.
    /// </summary>
    private readonly Dictionary<long, long> _firstPart = [];

    /// <summary>The body read ahead for <see cref="TryBodyAtHandLocked"/>: at most one per topic.</summary>
    private ReadAhead? _readAhead;

    /// <summary>Bodies of the next messages, read from the log together when their deliveries must read them back.</summary>
    private readonly BodyReadAhead _bodiesAhead;

    public LogJournal(TopicQueue topic, LogStorage storage)
    {
        _topic = topic;
        _storage = storage;
        _store = storage.Store;
        _space = storage.Space;
        _cache = storage.Bodies;
        _appendOrThrow = AppendOrThrow;
        _firstOf = FirstOf;
        _bodiesAhead = new BodyReadAhead(topic, _store, storage.ReadAhead);
    }

    public override byte[]? KeepBody(ReadOnlyMemory<byte> payload) =>
        !_store.CanRead || _cache.TryReserve(payload.Length) ? payload.ToArray() : null;

    public override void DropBody(byte[]? body)
    {
        if (body is not null && _store.CanRead)
        {
            _cache.Release(body.Length);
        }
    }

    public override MessageEntry AppendPublishLocked(
        long id, ReadOnlyMemory<byte> payload, byte[]? body, long dueTicks, byte[]? keyUtf8, long now, out long keyAddress, out ValueTask durable)
    {
        // The key and the due time go before the publish record: a durable publish is durable with them.
        keyAddress = keyUtf8 is null ? -1 : AppendOrThrow(LogRecord.IdempotencyKey(id, now, keyUtf8));
        if (dueTicks != 0)
        {
            AppendOrThrow(LogRecord.Schedule(id, dueTicks));
        }

        var record = MessageBodies.WriteParts(_store, _appendOrThrow, id, _topic.NameUtf8, payload, out var firstPart);
        long address;
        try
        {
            address = _store.AppendPublish(record, out durable);
            NoteAddress(address);
        }
        catch (Exception exception) when (exception is not MiniQueueStoreException)
        {
            throw NotTaken(record, exception);
        }

        if (firstPart >= 0)
        {
            _firstPart[id] = firstPart;
        }

        if (_space.Track(firstPart >= 0 ? firstPart : address, Footprint(payload.Length)))
        {
            _storage.RequestMaintenance();
        }

        return new MessageEntry(id, address, body, payload.Length, 0);
    }

    public override bool TrackPublishLocked(PendingPublish publish, ValueTask durable, long started, out ValueTask completion)
    {
        if (_pending.Count == 0 && durable.IsCompletedSuccessfully)
        {
            completion = default;
            return true;
        }

        _pending.Enqueue(publish);
        completion = CompletePublishAsync(publish.Entry.Id, durable, started);
        return false;
    }

    public override bool HasPendingLocked => _pending.Count != 0;

    public override int PendingCountLocked => _pending.Count;

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask CompletePublishAsync(long id, ValueTask durable, long started)
    {
        try
        {
            await durable.ConfigureAwait(false);
        }
        catch (Exception exception)
        {
            var committed = false;
            lock (_topic.SyncRoot)
            {
                var lost = RemoveLostLocked(id);
                if (RemovePendingLocked(id) is { } publish)
                {
                    _topic.PublishFailedLocked(publish);
                    ForgetLocked(publish.Entry);

                    // The record may still reach the disk; an ACK record keeps it from coming back after a restart.
                    AppendBestEffort(LogRecord.Ack(id));
                }
                else
                {
                    // A drain found its record committed and made it visible, and a later commit failed before this
                    // wait heard of the one that covered it: the message is durable, and consumers may have it already.
                    committed = !lost && id <= _visibleThroughId;
                }
            }

            if (!committed)
            {
                _storage.RequestMaintenance();
                throw exception as MiniQueueStoreException
                    ?? new MiniQueueStoreException($"The message to topic '{_topic.Name}' could not be made durable: {exception.Message}", exception);
            }

            _topic.PublishCompleted(started);
            return;
        }

        if (Volatile.Read(ref _lostCount) == 0 && id <= Volatile.Read(ref _visibleThroughId))
        {
            // The drain of an earlier publish of the same commit made this one visible.
            _topic.PublishCompleted(started);
            return;
        }

        LocalConsumer? toComplete = null;
        lock (_topic.SyncRoot)
        {
            if (RemoveLostLocked(id))
            {
                throw new MiniQueueStoreException(
                    $"The message to topic '{_topic.Name}' could not be made durable: a write failed, and the log was reopened without its record.");
            }

            // Commits are prefixes of the log, so every publish of this topic appended before this one is durable too.
            // Ids, not addresses: compaction may have copied a pending record forward, past later ones.
            while (_pending.TryPeek(out var publish) && publish.Entry.Id <= id)
            {
                MakeVisibleLocked(publish);
            }

            // So is every later one whose record the same commit (or a later one) covered: their publishers, which this
            // commit's completion resumes next, then find theirs done without taking the lock.
            while (_lostPublishes.Count == 0 && _pending.TryPeek(out var publish) && _store.IsCommitted(publish.Entry.Address))
            {
                MakeVisibleLocked(publish);
            }

            _topic.DispatchLocked(ref toComplete);
        }

        TopicQueue.CompleteAll(toComplete);
        _topic.PublishCompleted(started);
    }

    private void MakeVisibleLocked(PendingPublish publish)
    {
        _pending.Dequeue();
        _topic.MakeVisibleLocked(publish);
        Volatile.Write(ref _visibleThroughId, publish.Entry.Id);
    }

    private bool RemoveLostLocked(long id)
    {
        if (_lostPublishes.Count == 0 || !_lostPublishes.Remove(id))
        {
            return false;
        }

        Volatile.Write(ref _lostCount, _lostPublishes.Count);
        return true;
    }

    private PendingPublish? RemovePendingLocked(long id)
    {
        PendingPublish? found = null;
        for (var count = _pending.Count; count > 0; count--)
        {
            var publish = _pending.Dequeue();
            if (publish.Entry.Id == id)
            {
                found = publish;
            }
            else
            {
                _pending.Enqueue(publish);
            }
        }

        return found;
    }

    public override void DeliveredLocked(long id) => AppendBestEffort(LogRecord.Deliver(id));

    public override void AckedLocked(in MessageEntry entry)
    {
        ForgetLocked(entry);
        AppendBestEffort(LogRecord.Ack(entry.Id));
    }

    public override void ReturnedLocked(long id) => AppendBestEffort(LogRecord.Nack(id));

    public override void BackedLocked(long id) => AppendBestEffort(LogRecord.Back(id));

    public override void DackedLocked(long id, long dueTicks, int dackCount) => AppendBestEffort(LogRecord.Dack(id, dueTicks, dackCount));

    public override ValueTask PurgedLocked(IReadOnlyCollection<MessageEntry> discarded, long lastId)
    {
        // The purge record discards this topic's messages up to the last id published here; a message that moved in
        // from another topic may have a higher id, and is discarded by a record of its own.
        foreach (var entry in discarded.Where(entry => entry.Id > lastId))
        {
            AppendOrThrow(LogRecord.Ack(entry.Id));
        }

        var address = AppendOrThrow(LogRecord.Purge(_topic.NameUtf8, lastId));
        foreach (var entry in discarded)
        {
            ForgetLocked(entry);
        }

        return _store.IsCommitted(address) ? default : WaitForPurgeAsync(address);
    }

    private async ValueTask WaitForPurgeAsync(long address)
    {
        try
        {
            await _store.WaitForCommitAsync(address).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is not MiniQueueStoreException)
        {
            throw new MiniQueueStoreException($"The purge of topic '{_topic.Name}' could not be made durable: {exception.Message}", exception);
        }
    }

    public override long MovedLocked(in MessageEntry entry, TopicJournal target)
    {
        var record = LogRecord.Move(entry.Id, ((LogJournal)target)._topic.NameUtf8);
        long address;
        try
        {
            address = AppendOrThrow(record);
        }
        catch (MiniQueueStoreException exception)
        {
            _storage.OnRecordNotLogged(record, _topic.Name, exception);
            return -1;
        }

        // The body stays where it is; its bytes now count for the target topic.
        _bodiesAhead.ForgetLocked(entry.Id);
        var first = _firstPart.Count != 0 && _firstPart.Remove(entry.Id, out var part) ? part : -1;
        var footprint = Footprint(entry.Length);
        _space.Release(first >= 0 ? first : entry.Address, footprint);
        ((LogJournal)target).AcceptMovedLocked(entry, first);
        return address;
    }

    private void AcceptMovedLocked(in MessageEntry entry, long firstPart)
    {
        if (firstPart >= 0)
        {
            _firstPart[entry.Id] = firstPart;
        }

        _space.Track(FirstOf(entry), Footprint(entry.Length));
    }

    public override void ForgetLocked(in MessageEntry entry)
    {
        if (_readAhead?.Id == entry.Id)
        {
            _readAhead = null;
        }

        _bodiesAhead.ForgetLocked(entry.Id);

        _space.Release(FirstOf(entry), Footprint(entry.Length));
        _firstPart.Remove(entry.Id);
        DropBody(entry.Body);
    }

    public override async ValueTask<ReadOnlyMemory<byte>> ReadBodyAsync(MessageEntry entry)
    {
        try
        {
            // A body a checkpoint just copied forward is readable once that copy is committed.
            if (!_store.IsCommitted(entry.Address))
            {
                await _store.WaitForCommitAsync(entry.Address).ConfigureAwait(false);
            }

            if (MessageBodies.Split(_store.RecordLimit, _topic.NameUtf8.Length, entry.Length).Parts == 0
                && await _bodiesAhead.TryReadAsync(entry).ConfigureAwait(false) is { } ahead)
            {
                return ahead;
            }

            return await MessageBodies.ReadAsync(_store, entry.Address, entry.Id, _topic.NameUtf8.Length, entry.Length).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is not MiniQueueStoreException)
        {
            throw new MiniQueueStoreException($"The body of message {entry.Id} could not be read: {exception.Message}", exception);
        }
    }

    public override bool TryBodyAtHandLocked(in MessageEntry entry, out ReadOnlyMemory<byte>? readAhead)
    {
        readAhead = null;
        if (entry.Body is not null)
        {
            return true;
        }

        if (_bodiesAhead.TryTakeLocked(entry.Id, out var fromWindow))
        {
            readAhead = fromWindow;
            return true;
        }

        if (_readAhead is { } ahead && ahead.Id == entry.Id && ahead.Address == entry.Address && ahead.Body is { } body)
        {
            _readAhead = null;
            readAhead = body;
            return true;
        }

        if (_readAhead is null || _readAhead.Body is not null || _readAhead.Id != entry.Id)
        {
            var read = new ReadAhead(entry.Id, entry.Address);
            _readAhead = read;
            _ = ReadAheadAsync(read, entry);
        }

        return false;
    }

    /// <summary>Reads a body ahead for <see cref="TryBodyAtHandLocked"/>; a failure is left for a receive to meet.</summary>
    private async Task ReadAheadAsync(ReadAhead read, MessageEntry entry)
    {
        try
        {
            var body = await ReadBodyAsync(entry).ConfigureAwait(false);
            lock (_topic.SyncRoot)
            {
                if (ReferenceEquals(_readAhead, read))
                {
                    read.Body = body;
                }
            }
        }
        catch (Exception exception) when (exception is MiniQueueStoreException or ObjectDisposedException)
        {
            lock (_topic.SyncRoot)
            {
                if (ReferenceEquals(_readAhead, read))
                {
                    _readAhead = null;
                }
            }
        }
    }

    /// <summary>A body read ahead of its message's delivery: which message, where its body was, and the body once read.</summary>
    private sealed class ReadAhead(long id, long address)
    {
        public long Id { get; } = id;

        public long Address { get; } = address;

        public ReadOnlyMemory<byte>? Body { get; set; }
    }

    public override ValueTask WaitForDurableAsync(long address, CancellationToken cancellationToken) =>
        address < 0 || _store.IsCommitted(address) ? default : _store.WaitForCommitAsync(address, cancellationToken);

    public override void RestoreLocked(IEnumerable<MessageEntry> entries, IReadOnlyDictionary<long, long> firstParts)
    {
        foreach (var (id, first) in firstParts)
        {
            _firstPart[id] = first;
        }

        foreach (var entry in entries)
        {
            _space.Track(FirstOf(entry), Footprint(entry.Length));
        }
    }

    public override List<MessageEntry> BodiesToReadLocked(IEnumerable<MessageEntry> entries, long relocateBelow) =>
        [.. WithPending(entries).Where(entry => entry.Body is null && FirstOf(entry) < relocateBelow)];

    public override bool HasBodiesBeforeLocked(IEnumerable<MessageEntry> entries, long address) =>
        WithPending(entries).Any(entry => FirstOf(entry) < address);

    private IEnumerable<MessageEntry> WithPending(IEnumerable<MessageEntry> entries) =>
        entries.Concat(_pending.Select(static publish => publish.Entry));

    public override CheckpointResult? WriteCheckpointLocked(
        long checkpointId, List<CheckpointItem> items, long relocateBelow, LostRange lost,
        IReadOnlyDictionary<long, ReadOnlyMemory<byte>> readBodies, IEnumerable<IdempotencyKeys.Key> keys)
    {
        // The publishes not durable yet come last, in publish order.
        var pending = _pending.ToArray();
        foreach (var publish in pending)
        {
            var isDelayed = publish.DueTicks != 0;
            items.Add(new CheckpointItem(publish.Entry, isDelayed ? CheckpointClass.Delayed : CheckpointClass.Ready, publish.DueTicks, 0, IsPending: true));
        }

        if (items.Any(item => item.Entry.Body is null && FirstOf(item.Entry) < relocateBelow && !readBodies.ContainsKey(item.Entry.Id)))
        {
            items.RemoveRange(items.Count - pending.Length, pending.Length);
            return null;
        }

        var result = CheckpointWriter.Write(_store, _appendOrThrow, checkpointId, _topic.NameUtf8, items, _firstOf, relocateBelow, lost, readBodies, keys);

        // The checkpoint is in the log: now memory follows it. The bodies copied forward pin their new place; the
        // publishers of pending messages it dropped hear so.
        foreach (var item in items)
        {
            var entry = item.Entry;
            if (result.Gone.Contains(entry.Id))
            {
                ForgetLocked(entry);
            }
            else if (result.Moved.TryGetValue(entry.Id, out var address))
            {
                var footprint = Footprint(entry.Length);
                _space.Release(FirstOf(entry), footprint);
                if (result.MovedFirst.TryGetValue(entry.Id, out var first))
                {
                    _firstPart[entry.Id] = first;
                    _space.Track(first, footprint);
                }
                else
                {
                    _firstPart.Remove(entry.Id);
                    _space.Track(address, footprint);
                }
            }
        }

        var kept = new Queue<PendingPublish>(pending.Length);
        foreach (var publish in pending)
        {
            var id = publish.Entry.Id;
            if (result.Gone.Contains(id))
            {
                _lostPublishes.Add(id);
                Volatile.Write(ref _lostCount, _lostPublishes.Count);
                _topic.PublishFailedLocked(publish);
            }
            else
            {
                kept.Enqueue(result.Moved.TryGetValue(id, out var address) ? publish with { Entry = publish.Entry with { Address = address } } : publish);
            }
        }

        _pending = kept;
        return result;
    }

    /// <summary>The space the publish record of a body of <paramref name="length"/> bytes takes in the store.</summary>
    private long Footprint(int length) => MessageBodies.Footprint(_store, _topic.NameUtf8.Length, length);

    /// <summary>Where a message's body starts in the log: its first part, or its publish record.</summary>
    private long FirstOf(MessageEntry entry) =>
        _firstPart.Count != 0 && _firstPart.TryGetValue(entry.Id, out var first) ? first : entry.Address;

    private long AppendOrThrow(LogRecord record)
    {
        try
        {
            var address = _store.Append(record);
            NoteAddress(address);
            return address;
        }
        catch (Exception exception) when (exception is not MiniQueueStoreException)
        {
            throw NotTaken(record, exception);
        }
    }

    private MiniQueueStoreException NotTaken(LogRecord record, Exception exception) =>
        new($"The store did not take a {record.Kind} record for topic '{_topic.Name}': {exception.Message}", exception);

    /// <summary>
    /// A record that starts a new log segment is a moment to look for segments to free: consumers that only settle
    /// (publishes refused on a full disk) must free space too.
    /// </summary>
    private void NoteAddress(long address)
    {
        if (_space.NoteRecord(address))
        {
            _storage.RequestMaintenance();
        }
    }

    /// <summary>
    /// Logs a record whose loss costs at most a redelivery after a crash (at-least-once), so a failing store
    /// does not stop consumers.
    /// </summary>
    private void AppendBestEffort(LogRecord record)
    {
        try
        {
            NoteAddress(_store.Append(record));
        }
        catch (Exception exception)
        {
            _storage.OnRecordNotLogged(record, _topic.Name, exception);
        }
    }
}
