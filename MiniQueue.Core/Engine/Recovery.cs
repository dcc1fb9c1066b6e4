using System.Text;
using MiniQueue.Storage;

namespace MiniQueue.Engine;

/// <summary>
/// Rebuilds the queue's state from the records a store replays. Records about messages whose publish record was
/// truncated away are ignored: such messages were gone before the truncation.
/// </summary>
/// <remarks>
/// At the end, messages that consumers held (delivered, never settled) go to the front of their topic in the order
/// they were delivered, ahead of the NACKed ones; delayed messages keep their due time and dackCount.
/// </remarks>
internal sealed class Recovery
{
    private readonly Dictionary<long, Node> _live = [];
    private readonly Dictionary<string, TopicState> _topics = new(StringComparer.Ordinal);
    private readonly Dictionary<long, OpenCheckpoint> _checkpoints = [];

    /// <summary>The first part of each body written in parts, by the address of the record that publishes it.</summary>
    private readonly Dictionary<long, long> _firstParts = [];

    /// <summary>Due times of delayed publishes whose publish record has not come yet, by message id.</summary>
    private readonly Dictionary<long, long> _scheduled = [];

    /// <summary>Idempotency keys whose publish record has not come yet, by message id.</summary>
    private readonly Dictionary<long, RecoveredKey> _keyed = [];
    private TopicState? _lastTopic;

    /// <summary>How many records were applied.</summary>
    public long Records { get; private set; }

    /// <summary>The highest message id any record mentioned; new ids start above it.</summary>
    public long MaxMessageId { get; private set; }

    public int LiveMessages => _live.Count;

    public void Apply(StoredRecord stored)
    {
        var record = LogRecord.Read(stored.Data);
        var order = ++Records;
        MaxMessageId = Math.Max(MaxMessageId, record.MessageId);
        if (record.Kind == LogRecordKind.PublishLarge)
        {
            _firstParts[stored.Address] = MessageBodies.FirstPart(record);
        }

        switch (record.Kind)
        {
            case LogRecordKind.Publish or LogRecordKind.PublishLarge when _live.TryGetValue(record.MessageId, out var copied):
                // A copy written before a truncation: the body moved, the message stays where it is.
                copied.Address = stored.Address;
                return;
            case LogRecordKind.Publish or LogRecordKind.PublishLarge:
                var topic = GetTopic(record.Topic.Span);
                var node = new Node(record.MessageId, topic, stored.Address, record.BodyLength);
                _live[record.MessageId] = node;
                topic.LastId = Math.Max(topic.LastId, record.MessageId);
                if (_keyed.Count != 0 && _keyed.Remove(record.MessageId, out var key))
                {
                    topic.Keys.Add(key);
                }

                if (_scheduled.Count != 0 && _scheduled.Remove(record.MessageId, out var due))
                {
                    node.Order = order;
                    node.DueTicks = due;
                    node.MoveTo(topic.Delayed, atFront: false);
                }
                else
                {
                    node.MoveTo(topic.Ready, atFront: false);
                }

                return;
            case LogRecordKind.Schedule:
                _scheduled[record.MessageId] = record.DueTicks;
                return;
            case LogRecordKind.IdempotencyKey:
                _keyed[record.MessageId] = new RecoveredKey(record.Payload.ToArray(), record.DueTicks, stored.Address);
                return;
            case LogRecordKind.CheckpointKeys:
                if (_checkpoints.TryGetValue(record.MessageId, out var keysOf))
                {
                    foreach (var (utf8, ticks) in IdempotencyKeys.Decode(record.Payload))
                    {
                        keysOf.Keys.Add(new RecoveredKey(utf8, ticks, keysOf.Address));
                    }
                }

                return;
            case LogRecordKind.Purge:
                Purge(GetTopic(record.Topic.Span), record.MessageId);
                return;
            case LogRecordKind.CheckpointBegin:
                _checkpoints[record.MessageId] = new OpenCheckpoint(GetTopic(record.Topic.Span), stored.Address);
                return;
            case LogRecordKind.CheckpointEntries or LogRecordKind.CheckpointEntriesCounted:
                if (_checkpoints.TryGetValue(record.MessageId, out var open))
                {
                    var size = CheckpointEntry.SizeIn(record.Kind);
                    for (var offset = 0; offset < record.Payload.Length; offset += size)
                    {
                        open.Entries.Add(CheckpointEntry.Read(record.Payload.Span[offset..], record.Kind));
                    }
                }

                return;
            case LogRecordKind.CheckpointEnd:
                if (_checkpoints.Remove(record.MessageId, out var complete))
                {
                    ApplyCheckpoint(complete.Topic, complete.Entries, order);
                    complete.Topic.Keys.Clear();
                    complete.Topic.Keys.AddRange(complete.Keys);
                }

                return;
        }

        if (!_live.TryGetValue(record.MessageId, out var message))
        {
            return;
        }

        switch (record.Kind)
        {
            case LogRecordKind.Deliver:
                message.Order = order;
                message.Deliveries++;
                message.MoveTo(message.Topic.Held, atFront: false);
                break;
            case LogRecordKind.Move:
                // To the end of another topic, as a new message there.
                message.Topic = GetTopic(record.Topic.Span);
                message.DackCount = 0;
                message.Deliveries = 0;
                message.MoveTo(message.Topic.Ready, atFront: false);
                break;
            case LogRecordKind.Ack:
                message.Detach();
                _live.Remove(record.MessageId);
                break;
            case LogRecordKind.Nack:
                message.MoveTo(message.Topic.Front, atFront: true);
                break;
            case LogRecordKind.Back:
                message.MoveTo(message.Topic.Ready, atFront: false);
                break;
            case LogRecordKind.Dack:
                message.Order = order;
                message.DueTicks = record.DueTicks;
                message.DackCount = record.DackCount;
                message.MoveTo(message.Topic.Delayed, atFront: false);
                break;
        }
    }

    /// <summary>Replaces everything replay knew of a topic with a checkpoint's state.</summary>
    private void ApplyCheckpoint(TopicState topic, List<CheckpointEntry> entries, long order)
    {
        foreach (var list in (ReadOnlySpan<LinkedList<Node>>)[topic.Held, topic.Front, topic.Delayed, topic.Ready])
        {
            foreach (var node in list)
            {
                _live.Remove(node.Id);
            }

            list.Clear();
        }

        // Entries come in delivery order; their order numbers stay below those of any later record.
        var sequence = order - entries.Count - 1;
        foreach (var entry in entries)
        {
            // A checkpoint says where its messages are: one still listed elsewhere (it never should be) leaves that place.
            if (_live.TryGetValue(entry.Id, out var elsewhere))
            {
                elsewhere.Detach();
            }

            var node = new Node(entry.Id, topic, entry.Address, entry.Length)
            {
                DackCount = entry.DackCount,
                Order = ++sequence,
                DueTicks = entry.DueTicks,
                Deliveries = entry.Deliveries,
            };
            _live[entry.Id] = node;
            MaxMessageId = Math.Max(MaxMessageId, entry.Id);
            topic.LastId = Math.Max(topic.LastId, entry.Id);
            node.MoveTo(
                entry.Class switch
                {
                    CheckpointClass.Held => topic.Held,
                    CheckpointClass.Front => topic.Front,
                    CheckpointClass.Delayed => topic.Delayed,
                    _ => topic.Ready,
                },
                atFront: false);
        }
    }

    private void Purge(TopicState topic, long upToId)
    {
        foreach (var list in (ReadOnlySpan<LinkedList<Node>>)[topic.Front, topic.Delayed, topic.Ready])
        {
            for (var current = list.First; current is not null;)
            {
                var next = current.Next;
                if (current.Value.Id <= upToId)
                {
                    list.Remove(current);
                    _live.Remove(current.Value.Id);
                }

                current = next;
            }
        }
    }

    private TopicState GetTopic(ReadOnlySpan<byte> utf8)
    {
        // Consecutive records are mostly about the same topic; skip the decoding then.
        if (_lastTopic is not null && utf8.SequenceEqual(_lastTopic.NameUtf8))
        {
            return _lastTopic;
        }

        var name = Encoding.UTF8.GetString(utf8);
        if (!_topics.TryGetValue(name, out var topic))
        {
            topic = new TopicState(name, utf8.ToArray());
            _topics.Add(name, topic);
        }

        _lastTopic = topic;
        return topic;
    }

    /// <summary>The recovered topics. Held messages appear at the front of <see cref="RecoveredTopic.Front"/>.</summary>
    public IEnumerable<RecoveredTopic> Topics()
    {
        foreach (var topic in _topics.Values)
        {
            var held = topic.Held.OrderBy(node => node.Order).Select(node => node.ToEntry()).ToList();
            var front = held.Concat(topic.Front.Select(node => node.ToEntry())).ToList();
            var delayed = topic.Delayed
                .Select(node => (node.ToEntry(), new DueKey(node.DueTicks, node.Order)))
                .OrderBy(pair => pair.Item2)
                .ToList();
            var firstParts = new Dictionary<long, long>();
            if (_firstParts.Count > 0)
            {
                foreach (var node in topic.Held.Concat(topic.Front).Concat(topic.Delayed).Concat(topic.Ready))
                {
                    if (_firstParts.TryGetValue(node.Address, out var first))
                    {
                        firstParts[node.Id] = first;
                    }
                }
            }

            var deliveries = topic.Held.Concat(topic.Front).Concat(topic.Delayed).Concat(topic.Ready)
                .Where(static node => node.Deliveries > 0)
                .ToDictionary(static node => node.Id, static node => node.Deliveries);
            yield return new RecoveredTopic(
                topic.Name, front, held, delayed, topic.Ready.Select(node => node.ToEntry()).ToList(), firstParts, deliveries, topic.Keys, topic.LastId, Records);
        }
    }

    private sealed class TopicState(string name, byte[] nameUtf8)
    {
        public string Name { get; } = name;

        public byte[] NameUtf8 { get; } = nameUtf8;

        public long LastId { get; set; }

        public LinkedList<Node> Front { get; } = new();

        public LinkedList<Node> Held { get; } = new();

        public LinkedList<Node> Delayed { get; } = new();

        public LinkedList<Node> Ready { get; } = new();

        /// <summary>The idempotency keys, oldest first (expired ones are dropped when the topic is restored).</summary>
        public List<RecoveredKey> Keys { get; } = [];
    }

    /// <summary>A checkpoint whose end has not come yet: its topic, where it begins, and what it carried so far.</summary>
    private sealed class OpenCheckpoint(TopicState topic, long address)
    {
        public TopicState Topic { get; } = topic;

        public long Address { get; } = address;

        public List<CheckpointEntry> Entries { get; } = [];

        public List<RecoveredKey> Keys { get; } = [];
    }

    private sealed class Node
    {
        private readonly LinkedListNode<Node> _link;

        public Node(long id, TopicState topic, long address, int length)
        {
            Id = id;
            Topic = topic;
            Address = address;
            Length = length;
            _link = new LinkedListNode<Node>(this);
        }

        public long Id { get; }

        public TopicState Topic { get; set; }

        public long Address { get; set; }

        public int Length { get; }

        public long Order { get; set; }

        public long DueTicks { get; set; }

        public int DackCount { get; set; }

        /// <summary>How many times the message was delivered (Deliver records, and the count a checkpoint carried).</summary>
        public int Deliveries { get; set; }

        public void Detach() => _link.List?.Remove(_link);

        public void MoveTo(LinkedList<Node> list, bool atFront)
        {
            Detach();
            if (atFront)
            {
                list.AddFirst(_link);
            }
            else
            {
                list.AddLast(_link);
            }
        }

        public MessageEntry ToEntry() => new(Id, Address, null, Length, DackCount);
    }
}

/// <summary>One topic as recovery found it.</summary>
internal sealed record RecoveredTopic(
    string Name,
    IReadOnlyList<MessageEntry> Front,
    IReadOnlyList<MessageEntry> HeldAtCrash,
    IReadOnlyList<(MessageEntry Entry, DueKey Key)> Delayed,
    IReadOnlyList<MessageEntry> Ready,
    IReadOnlyDictionary<long, long> FirstParts,
    IReadOnlyDictionary<long, int> Deliveries,
    IReadOnlyList<RecoveredKey> Keys,
    long LastId,
    long DackSequence);

/// <summary>An idempotency key as recovery found it: its UTF-8, when it was published, and the record that holds it now.</summary>
internal readonly record struct RecoveredKey(byte[] Utf8, long PublishedTicks, long Address);
