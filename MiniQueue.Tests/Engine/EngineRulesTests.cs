namespace MiniQueue.Tests.Engine;

/// <summary>The engine rules of docs/PROTOCOL.md, one test each, against each local backend.</summary>
[CancelAfter(30_000)]
[TestFixture(Backend.InMemory)]
[TestFixture(Backend.FasterLog)]
[TestFixture(Backend.PostgreSql)]
public sealed class EngineRulesTests(Backend backend)
{
    private BackendEngines _engines = null!;

    [SetUp]
    public void CreateEngines() => _engines = new BackendEngines(backend);

    [TearDown]
    public void DeleteEngines() => _engines.Dispose();

    private ValueTask<MiniQueueEngine> OpenAsync(TimeProvider? time = null) => _engines.OpenAsync(time);

    [Test]
    public async Task Publish_CreatesTopic_OnFirstPublishOnly()
    {
        await using var queue = await OpenAsync();
        await using var consumer = queue.Subscribe("orders");

        Assert.That(queue.GetTopics(), Is.Empty, "subscribing does not create a topic");

        await queue.PublishAsync("orders", "one");

        Assert.That(queue.GetTopics(), Is.EqualTo(new[] { "orders" }));
    }

    [TestCase("a-ack", "a")]
    [TestCase("x-delay-1", "x")]
    [TestCase("my-topic", "my")]
    [TestCase("pgx", "pg")]
    [TestCase("a b", "a")]
    [TestCase("dé", "d")]
    [TestCase("t\U0001F600", "t")]
    public async Task TopicsWithRelatedNames_AreFullyIsolated(string name, string other)
    {
        var clock = TestSupport.NewClock();
        await using var queue = await OpenAsync(clock);
        await queue.PublishAsync(other, "other-1");
        await queue.PublishAsync(name, "mine-1");
        await queue.PublishAsync(name, "mine-2");

        await using var consumer = queue.Subscribe(name);
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("mine-1"));
        await consumer.DackAsync(TimeSpan.FromSeconds(1));
        clock.Advance(TimeSpan.FromSeconds(1));
        var delayed = await consumer.ReceiveAsync().Within();
        Assert.That((delayed.Text(), delayed.DackCount), Is.EqualTo(("mine-1", 1)));
        await consumer.AckAsync();

        Assert.That(await queue.PurgeAsync(name), Is.EqualTo(1));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(queue.GetStats(other), Is.EqualTo(new TopicStats(1, 0, 0, 0)));
            Assert.That(queue.GetStats(name), Is.EqualTo(new TopicStats(0, 0, 0, 1)));
            Assert.That(queue.GetTopics(), Is.EquivalentTo(new[] { name, other }));
        }

        await using var otherConsumer = queue.Subscribe(other);
        Assert.That(await otherConsumer.ReceiveTextAsync(), Is.EqualTo("other-1"));
    }

    // Attribute arguments are stored as UTF-8, which cannot carry a lone surrogate, so the names come from code.
    private static readonly string[] s_invalidNames =
        ["", "a/b", "/", "tab\there", "nul\0", "del\u007F", "c1\u0085", "c1end\u009F", "lone\uD800", "lone\uDC00x", "pair\uDC00\uD800"];

    [TestCaseSource(nameof(s_invalidNames))]
    public async Task InvalidTopicNames_AreRefusedEverywhere(string name)
    {
        await using var queue = await OpenAsync();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(() => queue.PublishAsync(name, "x").AsTask(), Throws.ArgumentException.With.Message.Contains("invalid topic value"));
            Assert.That(() => queue.Subscribe(name), Throws.ArgumentException);
            Assert.That(() => queue.PurgeAsync(name).AsTask(), Throws.ArgumentException);
            Assert.That(() => queue.GetStats(name), Throws.ArgumentException);
            Assert.That(TopicName.IsValid(name), Is.False);
        }
    }

    [Test]
    public async Task TopicNames_AreLimitedTo255Utf8Bytes()
    {
        await using var queue = await OpenAsync();
        var longest = new string('é', 127) + "a";   // 255 bytes
        var tooLong = new string('é', 128);         // 256 bytes, 128 chars

        await queue.PublishAsync(longest, "x");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(queue.GetStats(longest).Ready, Is.EqualTo(1));
            Assert.That(() => queue.PublishAsync(tooLong, "x").AsTask(), Throws.ArgumentException);
            Assert.That(TopicName.IsValid(new string('a', 255)), Is.True);
            Assert.That(TopicName.IsValid(new string('a', 256)), Is.False);
        }
    }

    [Test]
    public async Task Delivery_IsFifo()
    {
        await using var queue = await OpenAsync();
        for (var i = 0; i < 10; i++)
        {
            await queue.PublishAsync("t", $"m{i}");
        }

        await using var consumer = queue.Subscribe("t");
        for (var i = 0; i < 10; i++)
        {
            Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo($"m{i}"));
            await consumer.AckAsync();
        }
    }

    [Test]
    public async Task Consumers_Compete_EachMessageGoesToOne()
    {
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "a");
        await queue.PublishAsync("t", "b");
        await using var first = queue.Subscribe("t");
        await using var second = queue.Subscribe("t");

        var one = await first.ReceiveTextAsync();
        var two = await second.ReceiveTextAsync();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(new[] { one, two }, Is.EqualTo(new[] { "a", "b" }));
            Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(0, 2, 0, 2)));
        }
    }

    [Test]
    public async Task Consumer_HoldsAtMostOneMessage()
    {
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "a");
        await queue.PublishAsync("t", "b");
        await using var consumer = queue.Subscribe("t");
        await consumer.ReceiveTextAsync();

        Assert.That(() => consumer.ReceiveAsync().AsTask(), Throws.InvalidOperationException);
        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(1, 1, 0, 1)));
    }

    [Test]
    public async Task Ack_RemovesTheHeldMessageForGood()
    {
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "a");
        await using var consumer = queue.Subscribe("t");
        await consumer.ReceiveTextAsync();

        await consumer.AckAsync();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(0, 0, 0, 1)));
            Assert.That(consumer.TryReceive(out _), Is.False);
            Assert.That(consumer.IsHoldingMessage, Is.False);
        }
    }

    [Test]
    public async Task APublishThatWouldCreateATopicOverMaxTopics_IsRefused_ButADeadLetterTopicIsNot()
    {
        await using var queue = await _engines.OpenAsync(configure: static options =>
        {
            options.MaxTopics = 2;
            options.TopicPolicies.Add(new MiniQueueTopicPolicy { Topics = "a", MaxDeliveries = 1 });
        });
        await queue.PublishAsync("a", "1");
        await queue.PublishAsync("b", "1");

        Assert.That(async () => await queue.PublishAsync("c", "1"), Throws.TypeOf<MiniQueueTopicLimitException>());
        Assert.That(
            async () => await queue.PublishAsync("c", TestSupport.Bytes("1"), new PublishOptions { IdempotencyKey = "k" }),
            Throws.TypeOf<MiniQueueTopicLimitException>());
        await queue.PublishAsync("a", "2");
        Assert.That(queue.GetTopics(), Is.EqualTo(new[] { "a", "b" }), "the refused publishes created nothing");

        // "a" allows one delivery: its NACKed first message moves to "a.dead", a third topic, which is never refused.
        await using var consumer = queue.Subscribe("a");
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("1"));
        await consumer.NackAsync();
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("2"));
        await consumer.AckAsync();
        await using var dead = queue.Subscribe("a.dead");
        Assert.That(await dead.ReceiveTextAsync(), Is.EqualTo("1"));
        Assert.That(queue.GetTopics(), Is.EqualTo(new[] { "a", "a.dead", "b" }));
    }

    [Test]
    public async Task TryReceive_HoldsTheNextReadyMessage_InOrder_AndSaysFalseWhenNoneIsReady()
    {
        await using var queue = await OpenAsync();
        await using var consumer = queue.Subscribe("t");
        Assert.That(consumer.TryReceive(out _), Is.False, "nothing published yet");
        await queue.PublishAsync("t", "a");
        await queue.PublishAsync("t", "b");

        Assert.That(consumer.TryReceive(out var first), Is.True);
        Assert.That(first.Text(), Is.EqualTo("a"));
        Assert.That(consumer.IsHoldingMessage, Is.True);
        Assert.That(() => consumer.TryReceive(out _), Throws.InvalidOperationException, "it holds a message");
        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(1, 1, 0, 1)));
        await consumer.NackAsync();

        Assert.That(consumer.TryReceive(out var again), Is.True);
        Assert.That(again.Text(), Is.EqualTo("a"), "the NACKed message is at the front");
        await consumer.AckAsync();
        Assert.That(consumer.TryReceive(out var second), Is.True);
        Assert.That(second.Text(), Is.EqualTo("b"));
        await consumer.AckAsync();

        Assert.That(consumer.TryReceive(out _), Is.False, "the topic is empty");
        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(0, 0, 0, 1)));
    }

    [TestCase("ack")]
    [TestCase("nack")]
    [TestCase("back")]
    [TestCase("dack")]
    public async Task Settling_WhileHoldingNothing_Fails_AndChangesNothing(string command)
    {
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "a");
        await using var holder = queue.Subscribe("t");
        await holder.ReceiveTextAsync();
        await using var idle = queue.Subscribe("t");

        Func<ValueTask> settle = command switch
        {
            "ack" => () => idle.AckAsync(),
            "nack" => () => idle.NackAsync(),
            "back" => () => idle.BackAsync(),
            _ => () => idle.DackAsync(TimeSpan.FromSeconds(1)),
        };

        Assert.That(() => settle().AsTask(), Throws.InvalidOperationException.With.Message.Contains(command.ToUpperInvariant()));
        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(0, 1, 0, 2)), "another consumer's message is untouched");
    }

    [Test]
    public async Task Nack_ReturnsMessageToFront()
    {
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "a");
        await queue.PublishAsync("t", "b");
        await using var consumer = queue.Subscribe("t");
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("a"));

        await consumer.NackAsync();

        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("a"));
    }

    [Test]
    public async Task Nack_HandsMessageToWaitingConsumer_AtOnce()
    {
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "a");
        await queue.PublishAsync("t", "b");
        await using var nacker = queue.Subscribe("t");
        await using var other = queue.Subscribe("t");
        Assert.That(await nacker.ReceiveTextAsync(), Is.EqualTo("a"));
        Assert.That(await other.ReceiveTextAsync(), Is.EqualTo("b"));
        await other.AckAsync();
        var waiting = other.ReceiveTextAsync();

        await nacker.NackAsync();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(await waiting.WaitAsync(TestSupport.Bound), Is.EqualTo("a"), "the waiting consumer gets the NACKed message");
            Assert.That(nacker.TryReceive(out _), Is.False, "the NACKing consumer does not get it back");
        }
    }

    [Test]
    public async Task Nack_LatestNackComesFirst()
    {
        await using var queue = await OpenAsync();
        foreach (var text in new[] { "a", "b", "c" })
        {
            await queue.PublishAsync("t", text);
        }

        await using var first = queue.Subscribe("t");
        await using var second = queue.Subscribe("t");
        await first.ReceiveTextAsync();
        await second.ReceiveTextAsync();
        await first.NackAsync();
        await second.NackAsync();

        await using var reader = queue.Subscribe("t");
        var order = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            order.Add(await reader.ReceiveTextAsync());
            await reader.AckAsync();
        }

        Assert.That(order, Is.EqualTo(new[] { "b", "a", "c" }));
    }

    [Test]
    public async Task Back_ReturnsMessageToTheBack()
    {
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "a");
        await queue.PublishAsync("t", "b");
        await using var consumer = queue.Subscribe("t");
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("a"));

        await consumer.BackAsync();

        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("b"));
        await consumer.AckAsync();
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("a"));
    }

    [Test]
    public async Task Back_HandsMessageToWaitingConsumer()
    {
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "a");
        await using var backer = queue.Subscribe("t");
        await using var waiter = queue.Subscribe("t");
        await backer.ReceiveTextAsync();
        var waiting = waiter.ReceiveTextAsync();

        await backer.BackAsync();

        Assert.That(await waiting.WaitAsync(TestSupport.Bound), Is.EqualTo("a"));
    }

    [Test]
    public async Task Dack_CountsTheDelay_AndReturnsTheMessageWhenDue()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await OpenAsync(clock);
        await queue.PublishAsync("t", "a");
        await using var consumer = queue.Subscribe("t");
        var first = await consumer.ReceiveAsync().Within();
        Assert.That(first.DackCount, Is.Zero);

        await consumer.DackAsync(TimeSpan.FromSeconds(5));

        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(0, 0, 1, 1)));
        clock.Advance(TimeSpan.FromSeconds(5));
        var again = await consumer.ReceiveAsync().Within();
        Assert.That((again.Text(), again.DackCount), Is.EqualTo(("a", 1)));
        await consumer.DackAsync(TimeSpan.FromSeconds(1));
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.That((await consumer.ReceiveAsync().Within()).DackCount, Is.EqualTo(2));
    }

    [Test]
    public async Task Dack_DueMessageComesAfterNackedOnes_AndBeforeFifo()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await OpenAsync(clock);
        foreach (var text in new[] { "delayed", "nacked", "fifo" })
        {
            await queue.PublishAsync("t", text);
        }

        await using var first = queue.Subscribe("t");
        await using var second = queue.Subscribe("t");
        await first.ReceiveTextAsync();
        await first.DackAsync(TimeSpan.FromSeconds(2));
        await second.ReceiveTextAsync();
        clock.Advance(TimeSpan.FromSeconds(3));
        await second.NackAsync();

        var order = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            order.Add(await first.ReceiveTextAsync());
            await first.AckAsync();
        }

        Assert.That(order, Is.EqualTo(new[] { "nacked", "delayed", "fifo" }));
    }

    [Test]
    public async Task Dack_SeveralDueTogether_ComeBackEarliestDueFirst_TiesInDackOrder()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await OpenAsync(clock);
        var delays = new[] { ("late", 9), ("early", 3), ("tie-1", 5), ("tie-2", 5) };
        foreach (var (text, _) in delays)
        {
            await queue.PublishAsync("t", text);
        }

        await using var consumer = queue.Subscribe("t");
        foreach (var (_, seconds) in delays)
        {
            await consumer.ReceiveTextAsync();
            await consumer.DackAsync(TimeSpan.FromSeconds(seconds));
        }

        clock.Advance(TimeSpan.FromSeconds(10));
        var order = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            order.Add(await consumer.ReceiveTextAsync());
            await consumer.AckAsync();
        }

        Assert.That(order, Is.EqualTo(new[] { "early", "tie-1", "tie-2", "late" }));
    }

    [TestCase(0)]
    [TestCase(-3)]
    public async Task Dack_ZeroOrNegative_IsDueAtOnce_AndStillCounts(int seconds)
    {
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "a");
        await queue.PublishAsync("t", "b");
        await using var consumer = queue.Subscribe("t");
        await consumer.ReceiveTextAsync();

        await consumer.DackAsync(TimeSpan.FromSeconds(seconds));

        var again = await consumer.ReceiveAsync().Within();
        Assert.That((again.Text(), again.DackCount), Is.EqualTo(("a", 1)), "due at once, ahead of FIFO");
    }

    [Test]
    public async Task Purge_DiscardsReadyAndDelayed_ButNotHeld()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await OpenAsync(clock);
        foreach (var text in new[] { "held", "delayed", "ready-1", "ready-2" })
        {
            await queue.PublishAsync("t", text);
        }

        await using var holder = queue.Subscribe("t");
        await using var dacker = queue.Subscribe("t");
        Assert.That(await holder.ReceiveTextAsync(), Is.EqualTo("held"));
        Assert.That(await dacker.ReceiveTextAsync(), Is.EqualTo("delayed"));
        await dacker.DackAsync(TimeSpan.FromSeconds(1));

        Assert.That(await queue.PurgeAsync("t"), Is.EqualTo(3));

        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(0, 1, 0, 2)));
        clock.Advance(TimeSpan.FromSeconds(2));
        Assert.That(dacker.TryReceive(out _), Is.False, "the purged delayed message never returns");
    }

    [Test]
    public async Task Purge_HeldMessageNackedLater_ReturnsToFront()
    {
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "held");
        await queue.PublishAsync("t", "purged");
        await using var holder = queue.Subscribe("t");
        await holder.ReceiveTextAsync();
        await queue.PurgeAsync("t");
        await queue.PublishAsync("t", "after");

        await holder.NackAsync();

        Assert.That(await holder.ReceiveTextAsync(), Is.EqualTo("held"));
        await holder.AckAsync();
        Assert.That(await holder.ReceiveTextAsync(), Is.EqualTo("after"));
    }

    [Test]
    public async Task Purge_OfAnUnknownTopic_DoesNothing()
    {
        await using var queue = await OpenAsync();

        Assert.That(await queue.PurgeAsync("nobody"), Is.Zero);
        Assert.That(queue.GetTopics(), Is.Empty);
    }

    [Test]
    public async Task DisposingConsumer_ReturnsHeldMessageToFront_AndToAWaitingConsumer()
    {
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "a");
        var leaver = queue.Subscribe("t");
        await using var waiter = queue.Subscribe("t");
        await leaver.ReceiveTextAsync();
        var waiting = waiter.ReceiveTextAsync();

        await leaver.DisposeAsync();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(await waiting.WaitAsync(TestSupport.Bound), Is.EqualTo("a"));
            Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(0, 1, 0, 1)));
            Assert.That(() => leaver.ReceiveAsync().AsTask(), Throws.TypeOf<ObjectDisposedException>());
        }
    }

    [Test]
    public async Task DisposingConsumer_ReturnsHeldMessageAheadOfTheQueue()
    {
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "a");
        await queue.PublishAsync("t", "b");
        var leaver = queue.Subscribe("t");
        await leaver.ReceiveTextAsync();

        await leaver.DisposeAsync();

        await using var next = queue.Subscribe("t");
        Assert.That(await next.ReceiveTextAsync(), Is.EqualTo("a"));
    }

    [Test]
    public async Task CancellingAWait_EndsIt_AndLosesNothing()
    {
        await using var queue = await OpenAsync();
        await using var cancelled = queue.Subscribe("t");
        await using var other = queue.Subscribe("t");
        using var cancellation = new CancellationTokenSource();
        var waiting = cancelled.ReceiveAsync(cancellation.Token).AsTask();

        await cancellation.CancelAsync();

        Assert.That(async () => await waiting.WaitAsync(TestSupport.Bound), Throws.InstanceOf<OperationCanceledException>());
        await queue.PublishAsync("t", "a");
        Assert.That(await other.ReceiveTextAsync(), Is.EqualTo("a"));
        Assert.That(cancelled.IsHoldingMessage, Is.False);
    }

    [Test]
    public async Task DisposingAWaitingConsumer_EndsTheWait()
    {
        await using var queue = await OpenAsync();
        var consumer = queue.Subscribe("t");
        var waiting = consumer.ReceiveAsync().AsTask();

        await consumer.DisposeAsync();

        Assert.That(async () => await waiting.WaitAsync(TestSupport.Bound), Throws.TypeOf<ObjectDisposedException>());
        await queue.PublishAsync("t", "a");
        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(1, 0, 0, 0)));
    }

    [Test]
    public async Task SubscribingToAMissingTopic_WaitsForItsFirstPublish()
    {
        await using var queue = await OpenAsync();
        await using var consumer = queue.Subscribe("later");
        var waiting = consumer.ReceiveTextAsync();

        await queue.PublishAsync("later", "first");

        Assert.That(await waiting.WaitAsync(TestSupport.Bound), Is.EqualTo("first"));
    }

    [Test]
    public async Task WaitingConsumers_AreServedLongestWaitingFirst()
    {
        await using var queue = await OpenAsync();
        await using var first = queue.Subscribe("t");
        await using var second = queue.Subscribe("t");
        var firstWaiting = first.ReceiveTextAsync();
        var secondWaiting = second.ReceiveTextAsync();

        await queue.PublishAsync("t", "a");
        await queue.PublishAsync("t", "b");

        Assert.That(await firstWaiting.WaitAsync(TestSupport.Bound), Is.EqualTo("a"));
        Assert.That(await secondWaiting.WaitAsync(TestSupport.Bound), Is.EqualTo("b"));
    }

    [Test]
    public async Task Stats_CountReadyHeldDelayedAndConsumers()
    {
        var clock = TestSupport.NewClock();
        await using var queue = await OpenAsync(clock);
        for (var i = 0; i < 5; i++)
        {
            await queue.PublishAsync("t", $"m{i}");
        }

        await using var holder = queue.Subscribe("t");
        await using var dacker = queue.Subscribe("t");
        await using var idle = queue.Subscribe("t");
        await holder.ReceiveTextAsync();
        await dacker.ReceiveTextAsync();
        await dacker.DackAsync(TimeSpan.FromSeconds(10));

        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(Ready: 3, Held: 1, Delayed: 1, Consumers: 3)));
        clock.Advance(TimeSpan.FromSeconds(10));
        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(Ready: 4, Held: 1, Delayed: 0, Consumers: 3)));
        Assert.That(queue.GetStats("unknown"), Is.EqualTo(default(TopicStats)));
    }

    [Test]
    public async Task EmptyAndBinaryMessages_AreDeliveredByteForByte()
    {
        await using var queue = await OpenAsync();
        var binary = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        await queue.PublishAsync("t", ReadOnlyMemory<byte>.Empty);
        await queue.PublishAsync("t", binary);

        await using var consumer = queue.Subscribe("t");
        var empty = await consumer.ReceiveAsync().Within();
        await consumer.AckAsync();
        var bytes = await consumer.ReceiveAsync().Within();

        Assert.That(empty.Payload.Length, Is.Zero);
        Assert.That(bytes.Payload.ToArray(), Is.EqualTo(binary));
    }

    [Test]
    public async Task Publish_CopiesThePayload()
    {
        await using var queue = await OpenAsync();
        var buffer = TestSupport.Bytes("original");
        await queue.PublishAsync("t", buffer);
        buffer[0] = (byte)'X';

        await using var consumer = queue.Subscribe("t");

        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("original"));
    }

    [Test]
    public async Task Publish_LargerThanTheMaximum_IsRefused()
    {
        await using var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { MaxMessageBytes = 10 });

        await queue.PublishAsync("t", new byte[10]);

        Assert.That(() => queue.PublishAsync("t", new byte[11]).AsTask(), Throws.ArgumentException.With.Message.Contains("message too large"));
        Assert.That(queue.GetStats("t").Ready, Is.EqualTo(1));
    }

    [Test]
    public async Task DisposingTheEngine_EndsConsumers_AndRefusesWork()
    {
        var queue = await OpenAsync();
        await queue.PublishAsync("t", "a");
        var holder = queue.Subscribe("t");
        var waiter = queue.Subscribe("t");
        await holder.ReceiveTextAsync();
        var waiting = waiter.ReceiveAsync().AsTask();

        await queue.DisposeAsync();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(async () => await waiting.WaitAsync(TestSupport.Bound), Throws.TypeOf<ObjectDisposedException>());
            Assert.That(holder.IsHoldingMessage, Is.False);
            Assert.That(() => queue.PublishAsync("t", "b").AsTask(), Throws.TypeOf<ObjectDisposedException>());
            Assert.That(() => queue.Subscribe("t"), Throws.TypeOf<ObjectDisposedException>());
            Assert.That(() => holder.AckAsync().AsTask(), Throws.TypeOf<ObjectDisposedException>());
        }
    }

    [Test]
    public async Task DisposingTheEngine_HandsNoReturnedMessageToAConsumerItIsEnding()
    {
        // Holders and waiters subscribed in turn: whichever order the engine ends them in, a message a holder returns
        // must not reach a waiter (its receive would succeed just before the engine goes).
        var queue = await OpenAsync();
        var holders = new List<MiniQueueConsumer>();
        var waiters = new List<MiniQueueConsumer>();
        for (var i = 0; i < 8; i++)
        {
            await queue.PublishAsync("t", $"m{i}");
            holders.Add(queue.Subscribe("t"));
            waiters.Add(queue.Subscribe("t"));
        }

        foreach (var holder in holders)
        {
            await holder.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
        }

        var waits = waiters.Select(static waiter => waiter.ReceiveAsync().AsTask()).ToList();

        await queue.DisposeAsync();

        foreach (var waiting in waits)
        {
            Assert.That(async () => await waiting.WaitAsync(TestSupport.Bound), Throws.TypeOf<ObjectDisposedException>());
        }

        Assert.That(holders.Select(static holder => holder.IsHoldingMessage), Has.All.False);
    }

    [Test]
    public async Task TopicsOnlySubscribedTo_AreForgotten_WhenTheirLastConsumerLeaves()
    {
        await using var queue = await OpenAsync();
        var consumer = queue.Subscribe("probe");
        Assert.That(queue.GetStats("probe").Consumers, Is.EqualTo(1));

        await consumer.DisposeAsync();

        Assert.That(queue.GetStats("probe"), Is.EqualTo(default(TopicStats)));
        await using var again = queue.Subscribe("probe");
        var waiting = again.ReceiveTextAsync();
        await queue.PublishAsync("probe", "a");
        Assert.That(await waiting.WaitAsync(TestSupport.Bound), Is.EqualTo("a"));
    }
}
