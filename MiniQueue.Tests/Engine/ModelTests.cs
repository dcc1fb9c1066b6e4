using System.Globalization;
using System.Text;
using Microsoft.Extensions.Time.Testing;

namespace MiniQueue.Tests.Engine;

/// <summary>
/// Random operation sequences run against the engine and against a small reference model of the rules in
/// docs/PROTOCOL.md, comparing every observable result: what each receive returns (body and dackCount), which
/// operations fail, the stats of every topic and the list of topics.
/// </summary>
[CancelAfter(120_000)]
[TestFixture(Backend.InMemory)]
[TestFixture(Backend.FasterLog)]
[TestFixture(Backend.PostgreSql)]
public sealed class ModelTests(Backend backend)
{
    private static readonly string[] s_topics = ["a", "a-ack", "b"];

    // Topic "a" is picked half of the time and delays repeat, so that consumers meet and due times tie.
    private static readonly string[] s_topicChoices = ["a", "a", "a", "a-ack", "b", "b"];
    private static readonly int[] s_dackSeconds = [-1, 0, 0, 1, 2, 2, 5];

    // Operation codes weighted towards the interesting ones: 0 publish, 1 subscribe, 2 receive, 3 ack, 4 nack,
    // 5 back, 6 dack, 7 advance time, 8 purge, 9 dispose a consumer, 10 cancel a wait, 11 publish with a delay,
    // 12 publish with an idempotency key, 13 touch.
    private static readonly int[] s_operations = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 5, 6, 6, 6, 7, 7, 8, 9, 10, 11, 12, 12, 13];
    private static readonly int[] s_publishDelays = [1, 2, 2, 5];
    private static readonly string[] s_keys = ["k1", "k2", "k3"];

    // The policies of the model's topics: "b" has a lease, "a" a short idempotency window (the others keep 2 minutes).
    private static readonly TimeSpan s_lease = TimeSpan.FromSeconds(4);
    private static readonly TimeSpan s_shortWindow = TimeSpan.FromSeconds(5);

    [Test]
    public async Task RandomSequences_MatchTheReferenceModel()
    {
        // A durable engine takes a few milliseconds to open its log in a new folder, a shared one a new database (about
        // 0.8 s a sequence on the 2-core CI machine): fewer sequences there.
        var sequences = backend switch
        {
            Backend.InMemory => 2_000,
            Backend.FasterLog => 300,
            _ => 50,
        };
        for (var seed = 1; seed <= sequences; seed++)
        {
            await RunSequenceAsync(seed, operations: 60);
        }
    }

    private async Task RunSequenceAsync(int seed, int operations)
    {
        var random = new Random(seed);
        var clock = TestSupport.NewClock();
        var model = new Model(clock);
        var history = new StringBuilder();
        using var engines = new BackendEngines(backend);
        await using var queue = await engines.OpenAsync(clock, static options =>
        {
            options.TopicPolicies.Add(new MiniQueueTopicPolicy { Topics = "b", Lease = s_lease });
            options.TopicPolicies.Add(new MiniQueueTopicPolicy { Topics = "a", IdempotencyWindow = s_shortWindow });
        });
        var consumers = new List<(MiniQueueConsumer Engine, ModelConsumer Model)>();
        var published = 0;

        for (var step = 0; step < operations; step++)
        {
            var live = consumers.Where(c => !c.Model.Disposed).ToList();
            var op = s_operations[random.Next(s_operations.Length)];
            if (op is >= 2 and <= 6 or 9 or 10 or 13 && live.Count == 0)
            {
                op = 1;
            }

            switch (op)
            {
                case 0:
                {
                    var topic = s_topicChoices[random.Next(s_topicChoices.Length)];
                    var text = "m" + (++published).ToString(CultureInfo.InvariantCulture);
                    history.AppendLine(CultureInfo.InvariantCulture, $"publish {topic} {text}");
                    await queue.PublishAsync(topic, text);
                    await ExpectHandOversAsync(model.Publish(topic, text), seed, history);
                    break;
                }

                case 1:
                {
                    if (live.Count >= 5)
                    {
                        goto case 0;
                    }

                    var topic = s_topicChoices[random.Next(s_topicChoices.Length)];
                    var engineConsumer = queue.Subscribe(topic);
                    var modelConsumer = model.Subscribe(topic, consumers.Count);
                    history.AppendLine(CultureInfo.InvariantCulture, $"subscribe c{modelConsumer.Id} {topic}");
                    consumers.Add((engineConsumer, modelConsumer));
                    break;
                }

                case 2:
                {
                    var (engine, m) = live[random.Next(live.Count)];
                    history.AppendLine(CultureInfo.InvariantCulture, $"receive c{m.Id}");
                    if (m.Held is not null || m.Waiting)
                    {
                        Assert.That(() => engine.ReceiveAsync().AsTask(), Throws.InvalidOperationException, Describe(seed, history));
                        break;
                    }

                    m.Cancellation = new CancellationTokenSource();
                    var pending = engine.ReceiveAsync(m.Cancellation.Token).AsTask();
                    if (model.Receive(m) is { } expected)
                    {
                        await ExpectDeliveryAsync(pending, expected, seed, history);
                    }
                    else
                    {
                        m.Pending = pending;
                    }

                    break;
                }

                case >= 3 and <= 6:
                {
                    var (engine, m) = live[random.Next(live.Count)];
                    var seconds = s_dackSeconds[random.Next(s_dackSeconds.Length)];
                    var command = op switch { 3 => "ack", 4 => "nack", 5 => "back", _ => "dack" };
                    history.AppendLine(CultureInfo.InvariantCulture, $"{command} c{m.Id} {(op == 6 ? seconds : "")}");
                    Func<ValueTask> settle = op switch
                    {
                        3 => () => engine.AckAsync(),
                        4 => () => engine.NackAsync(),
                        5 => () => engine.BackAsync(),
                        _ => () => engine.DackAsync(TimeSpan.FromSeconds(seconds)),
                    };
                    if (m.Held is null)
                    {
                        Assert.That(() => settle().AsTask(), Throws.InvalidOperationException, Describe(seed, history));
                        break;
                    }

                    await settle();
                    var handedOver = op switch
                    {
                        3 => model.Ack(m),
                        4 => model.Nack(m),
                        5 => model.Back(m),
                        _ => model.Dack(m, seconds),
                    };
                    await ExpectHandOversAsync(handedOver, seed, history);
                    break;
                }

                case 7:
                {
                    var delta = TimeSpan.FromMilliseconds(500 * random.Next(1, 7));
                    history.AppendLine(CultureInfo.InvariantCulture, $"advance {delta.TotalSeconds}s");
                    clock.Advance(delta);
                    await ExpectHandOversAsync(model.TimePassed(), seed, history);
                    break;
                }

                case 8:
                {
                    var topic = s_topicChoices[random.Next(s_topicChoices.Length)];
                    history.AppendLine(CultureInfo.InvariantCulture, $"purge {topic}");
                    var purged = await queue.PurgeAsync(topic);
                    Assert.That(purged, Is.EqualTo(model.Purge(topic)), Describe(seed, history));
                    break;
                }

                case 9:
                {
                    var (engine, m) = live[random.Next(live.Count)];
                    history.AppendLine(CultureInfo.InvariantCulture, $"dispose c{m.Id}");
                    var pending = m.Pending;
                    await engine.DisposeAsync();
                    var handedOver = model.Dispose(m);
                    if (pending is not null)
                    {
                        Assert.That(async () => await pending.WaitAsync(TestSupport.Bound), Throws.TypeOf<ObjectDisposedException>(), Describe(seed, history));
                    }

                    await ExpectHandOversAsync(handedOver, seed, history);
                    break;
                }

                case 11:
                {
                    var topic = s_topicChoices[random.Next(s_topicChoices.Length)];
                    var text = "m" + (++published).ToString(CultureInfo.InvariantCulture);
                    var delay = s_publishDelays[random.Next(s_publishDelays.Length)];
                    history.AppendLine(CultureInfo.InvariantCulture, $"publish {topic} {text} delay {delay}");
                    await queue.PublishAsync(topic, TestSupport.Bytes(text), new PublishOptions { Delay = TimeSpan.FromSeconds(delay) });
                    await ExpectHandOversAsync(model.PublishDelayed(topic, text, delay), seed, history);
                    break;
                }

                case 12:
                {
                    var topic = s_topicChoices[random.Next(s_topicChoices.Length)];
                    var text = "m" + (++published).ToString(CultureInfo.InvariantCulture);
                    var key = s_keys[random.Next(s_keys.Length)];
                    history.AppendLine(CultureInfo.InvariantCulture, $"publish {topic} {text} key {key}");
                    var result = await queue.PublishAsync(topic, TestSupport.Bytes(text), new PublishOptions { IdempotencyKey = key });
                    var (duplicate, handOvers) = model.PublishKeyed(topic, text, key);
                    Assert.That(result.IsDuplicate, Is.EqualTo(duplicate), Describe(seed, history));
                    await ExpectHandOversAsync(handOvers, seed, history);
                    break;
                }

                case 13:
                {
                    var (engine, m) = live[random.Next(live.Count)];
                    history.AppendLine(CultureInfo.InvariantCulture, $"touch c{m.Id}");
                    if (m.Held is null)
                    {
                        Assert.That(() => engine.TouchAsync().AsTask(), Throws.InvalidOperationException, Describe(seed, history));
                        break;
                    }

                    await engine.TouchAsync();
                    model.Touch(m);
                    break;
                }

                case 10:
                {
                    var waiting = live.Where(c => c.Model.Waiting).ToList();
                    if (waiting.Count == 0)
                    {
                        goto case 7;
                    }

                    var (_, m) = waiting[random.Next(waiting.Count)];
                    history.AppendLine(CultureInfo.InvariantCulture, $"cancel c{m.Id}");
                    var pending = m.Pending!;
                    await m.Cancellation!.CancelAsync();
                    model.CancelWait(m);
                    Assert.That(async () => await pending.WaitAsync(TestSupport.Bound), Throws.InstanceOf<OperationCanceledException>(), Describe(seed, history));
                    break;
                }
            }

            foreach (var topic in s_topics)
            {
                if (backend == Backend.PostgreSql)
                {
                    // Shared mode returns a message whose lease passed with a statement of its own, just after; and a
                    // take that raced a cancelled receive holds a message for a moment before it undoes the take. Its
                    // counts arrive where the model is within the bound.
                    if (!await Storage.DurableTestSupport.EventuallyAsync(() => queue.GetStats(topic) == model.Stats(topic)))
                    {
                        await AppendRowsAsync(engines.Database!, history);
                        Assert.That(queue.GetStats(topic), Is.EqualTo(model.Stats(topic)), $"stats of {topic}: " + Describe(seed, history));
                    }

                    continue;
                }

                Assert.That(queue.GetStats(topic), Is.EqualTo(model.Stats(topic)), $"stats of {topic}: " + Describe(seed, history));
            }

            Assert.That(queue.GetTopics(), Is.EqualTo(model.CreatedTopics()), Describe(seed, history));
        }
    }

    private static async Task ExpectHandOversAsync(List<(ModelConsumer Consumer, ModelMessage Message)> handOvers, int seed, StringBuilder history)
    {
        foreach (var (consumer, message) in handOvers)
        {
            var pending = consumer.Pending!;
            consumer.Pending = null;
            await ExpectDeliveryAsync(pending, message, seed, history);
        }
    }

    private static async Task ExpectDeliveryAsync(Task<Delivery> pending, ModelMessage expected, int seed, StringBuilder history)
    {
        var delivery = await pending.WaitAsync(TestSupport.Bound);
        Assert.That((delivery.Text(), delivery.DackCount), Is.EqualTo((expected.Text, expected.DackCount)), Describe(seed, history));
    }

    /// <summary>For a failure in shared mode: the messages' rows, to tell a stray hold from a lost message.</summary>
    private static async Task AppendRowsAsync(string database, StringBuilder history)
    {
        await using var connection = new Npgsql.NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(
            "SELECT id, topic, convert_from(body, 'UTF8'), deliveries, hold IS NOT NULL, cls, dack_count FROM miniqueue_messages ORDER BY id", connection);
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            history.AppendLine(CultureInfo.InvariantCulture,
                $"row {reader.GetInt64(0)} {reader.GetString(1)} {reader.GetString(2)} deliveries={reader.GetInt32(3)} held={reader.GetBoolean(4)} class={reader.GetInt16(5)} dackCount={reader.GetInt32(6)}");
        }
    }

    private static string Describe(int seed, StringBuilder history) => $"seed {seed}, after:\n{history}";

    private sealed class ModelMessage(string text)
    {
        public string Text { get; } = text;

        public int DackCount { get; set; }

        public long DueTicks { get; set; }

        public long DackOrder { get; set; }
    }

    private sealed class ModelConsumer(int id, string topic)
    {
        public int Id { get; } = id;

        public string Topic { get; } = topic;

        public ModelMessage? Held { get; set; }

        public bool Waiting { get; set; }

        public bool Disposed { get; set; }

        public Task<Delivery>? Pending { get; set; }

        /// <summary>When the lease on the held message passes (topic "b"), and the order leases were started in.</summary>
        public (long Deadline, long Order)? Lease { get; set; }

        public CancellationTokenSource? Cancellation { get; set; }
    }

    private sealed class ModelTopic
    {
        public List<ModelMessage> Front { get; } = [];      // index 0 is delivered first

        public List<ModelMessage> Delayed { get; } = [];

        public List<ModelMessage> Ready { get; } = [];

        public List<ModelConsumer> Waiters { get; } = [];

        public int Consumers { get; set; }

        public int Held { get; set; }

        public bool Created { get; set; }
    }

    /// <summary>The rules, written as plainly as possible.</summary>
    private sealed class Model(FakeTimeProvider clock)
    {
        private readonly Dictionary<string, ModelTopic> _topics = s_topics.ToDictionary(t => t, _ => new ModelTopic());
        private readonly List<ModelConsumer> _consumers = [];
        private readonly Dictionary<(string Topic, string Key), long> _keys = [];
        private long _dackOrder;
        private long _leaseOrder;

        private long Now => clock.GetUtcNow().UtcTicks;

        public List<(ModelConsumer, ModelMessage)> Publish(string topic, string text)
        {
            var state = _topics[topic];
            state.Created = true;
            state.Ready.Add(new ModelMessage(text));
            return Dispatch(state, []);
        }

        public ModelConsumer Subscribe(string topic, int id)
        {
            _topics[topic].Consumers++;
            var consumer = new ModelConsumer(id, topic);
            _consumers.Add(consumer);
            return consumer;
        }

        /// <summary>Published now, due after <paramref name="seconds"/>, among the delayed messages in due order.</summary>
        public List<(ModelConsumer, ModelMessage)> PublishDelayed(string topic, string text, int seconds)
        {
            var state = _topics[topic];
            state.Created = true;
            state.Delayed.Add(new ModelMessage(text) { DueTicks = Now + TimeSpan.FromSeconds(seconds).Ticks, DackOrder = ++_dackOrder });
            return Dispatch(state, []);
        }

        /// <summary>A duplicate when the key was first published to the topic less than its window ago.</summary>
        public (bool Duplicate, List<(ModelConsumer, ModelMessage)> HandOvers) PublishKeyed(string topic, string text, string key)
        {
            var window = topic == "a" ? s_shortWindow : TimeSpan.FromMinutes(2);
            if (_keys.TryGetValue((topic, key), out var first) && Now - first < window.Ticks)
            {
                return (true, []);
            }

            _keys[(topic, key)] = Now;
            return (false, Publish(topic, text));
        }

        public void Touch(ModelConsumer consumer)
        {
            if (consumer.Lease is not null)
            {
                consumer.Lease = (Now + s_lease.Ticks, ++_leaseOrder);
            }
        }

        public ModelMessage? Receive(ModelConsumer consumer)
        {
            var state = _topics[consumer.Topic];
            if (Take(state) is { } message)
            {
                Hold(state, consumer, message);
                return message;
            }

            consumer.Waiting = true;
            state.Waiters.Add(consumer);
            return null;
        }

        public List<(ModelConsumer, ModelMessage)> Ack(ModelConsumer consumer)
        {
            Release(consumer);
            return [];
        }

        public List<(ModelConsumer, ModelMessage)> Nack(ModelConsumer consumer)
        {
            var (state, message) = Release(consumer);
            state.Front.Insert(0, message);
            return Dispatch(state, []);
        }

        public List<(ModelConsumer, ModelMessage)> Back(ModelConsumer consumer)
        {
            var (state, message) = Release(consumer);
            state.Ready.Add(message);
            return Dispatch(state, []);
        }

        public List<(ModelConsumer, ModelMessage)> Dack(ModelConsumer consumer, int seconds)
        {
            var (state, message) = Release(consumer);
            message.DackCount++;
            message.DueTicks = Now + TimeSpan.FromSeconds(Math.Max(0, seconds)).Ticks;
            message.DackOrder = ++_dackOrder;
            state.Delayed.Add(message);
            return Dispatch(state, []);
        }

        public List<(ModelConsumer, ModelMessage)> TimePassed()
        {
            // Leases that passed: each message back to the front as after a NACK, in the order the leases end.
            var lapsed = _consumers.Where(c => c.Held is not null && c.Lease is { } lease && lease.Deadline <= Now)
                .OrderBy(c => c.Lease!.Value.Deadline).ThenBy(c => c.Lease!.Value.Order).ToList();
            foreach (var consumer in lapsed)
            {
                var (state, message) = Release(consumer);
                state.Front.Insert(0, message);
            }

            var handOvers = new List<(ModelConsumer, ModelMessage)>();
            foreach (var state in _topics.Values)
            {
                Dispatch(state, handOvers);
            }

            return handOvers;
        }

        public int Purge(string topic)
        {
            var state = _topics[topic];
            var count = state.Front.Count + state.Delayed.Count + state.Ready.Count;
            state.Front.Clear();
            state.Delayed.Clear();
            state.Ready.Clear();
            return count;
        }

        public List<(ModelConsumer, ModelMessage)> Dispose(ModelConsumer consumer)
        {
            var state = _topics[consumer.Topic];
            consumer.Disposed = true;
            state.Consumers--;
            CancelWait(consumer);
            return consumer.Held is null ? [] : Nack(consumer);
        }

        public void CancelWait(ModelConsumer consumer)
        {
            consumer.Waiting = false;
            consumer.Pending = null;
            _topics[consumer.Topic].Waiters.Remove(consumer);
        }

        public TopicStats Stats(string topic)
        {
            var state = _topics[topic];
            var due = state.Delayed.Count(m => m.DueTicks <= Now);
            return new TopicStats(state.Front.Count + due + state.Ready.Count, state.Held, state.Delayed.Count - due, state.Consumers);
        }

        public IReadOnlyList<string> CreatedTopics() =>
            [.. _topics.Where(t => t.Value.Created).Select(t => t.Key).Order(StringComparer.Ordinal)];

        private (ModelTopic, ModelMessage) Release(ModelConsumer consumer)
        {
            var state = _topics[consumer.Topic];
            var message = consumer.Held!;
            consumer.Held = null;
            consumer.Lease = null;
            state.Held--;
            return (state, message);
        }

        private void Hold(ModelTopic state, ModelConsumer consumer, ModelMessage message)
        {
            consumer.Held = message;
            consumer.Waiting = false;
            state.Held++;
            if (consumer.Topic == "b")
            {
                consumer.Lease = (Now + s_lease.Ticks, ++_leaseOrder);
            }
        }

        private List<(ModelConsumer, ModelMessage)> Dispatch(ModelTopic state, List<(ModelConsumer, ModelMessage)> handOvers)
        {
            while (state.Waiters.Count > 0 && Take(state) is { } message)
            {
                var consumer = state.Waiters[0];
                state.Waiters.RemoveAt(0);
                Hold(state, consumer, message);
                handOvers.Add((consumer, message));
            }

            return handOvers;
        }

        private ModelMessage? Take(ModelTopic state)
        {
            List<ModelMessage>? from = null;
            if (state.Front.Count > 0)
            {
                from = state.Front;
            }
            else if (state.Delayed.Where(m => m.DueTicks <= Now).OrderBy(m => m.DueTicks).ThenBy(m => m.DackOrder).FirstOrDefault() is { } due)
            {
                state.Delayed.Remove(due);
                return due;
            }
            else if (state.Ready.Count > 0)
            {
                from = state.Ready;
            }

            if (from is null)
            {
                return null;
            }

            var message = from[0];
            from.RemoveAt(0);
            return message;
        }
    }
}
