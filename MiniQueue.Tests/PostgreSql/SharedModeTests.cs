using System.Collections.Concurrent;
using System.Diagnostics;
using MiniQueue.PostgreSql;
using MiniQueue.Tests.Engine;
using Npgsql;

namespace MiniQueue.Tests.PostgreSql;

/// <summary>
/// Shared mode across processes: several engines opened on one database of the run's throwaway PostgreSQL cluster
/// serve one queue (each engine is what one process has; the rule and model suites run on one engine per test).
/// </summary>
[CancelAfter(60_000)]
public sealed class SharedModeTests
{
    private BackendEngines _engines = null!;

    [SetUp]
    public void CreateEngines() => _engines = new BackendEngines(Engine.Backend.PostgreSql);

    [TearDown]
    public void DeleteEngines() => _engines.Dispose();

    private ValueTask<MiniQueueEngine> OpenAsync() => _engines.OpenAsync(TimeProvider.System);

    [Test]
    public async Task ConsumersOnTwoProcesses_Compete_EachMessageGoesToExactlyOne()
    {
        await using var first = await OpenAsync();
        await using var second = await OpenAsync();
        const int Messages = 300;
        var received = new ConcurrentBag<string>();

        async Task ConsumeAsync(MiniQueueEngine engine)
        {
            await using var consumer = engine.Subscribe("work");
            while (received.Count < Messages)
            {
                using var wait = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
                try
                {
                    var delivery = await consumer.ReceiveAsync(wait.Token);
                    received.Add(delivery.Text());
                    await consumer.AckAsync();
                }
                catch (OperationCanceledException)
                {
                }
            }
        }

        var consumers = new[] { ConsumeAsync(first), ConsumeAsync(first), ConsumeAsync(second), ConsumeAsync(second) };
        await Task.WhenAll(Enumerable.Range(0, Messages).Select(i => (i % 2 == 0 ? first : second).PublishAsync("work", $"m{i}").AsTask()));
        await Task.WhenAll(consumers).WaitAsync(TestSupport.Bound);

        Assert.That(received.Order(), Is.EqualTo(Enumerable.Range(0, Messages).Select(i => $"m{i}").Order()), "every message once, none twice");
        Assert.That(
            await Storage.DurableTestSupport.EventuallyAsync(() => first.GetStats("work") == new TopicStats(0, 0, 0, 0)), Is.True,
            "nothing left, and no consumer on either process (the other's count follows its changes)");
    }

    [Test]
    public async Task PublishedOnOneProcess_IsReceivedByAConsumerWaitingOnTheOther_AtOnce()
    {
        await using var publisher = await OpenAsync();
        await using var consumerProcess = await OpenAsync();
        await using var consumer = consumerProcess.Subscribe("orders");
        var waiting = consumer.ReceiveAsync().AsTask();
        await Task.Delay(100);
        Assert.That(waiting.IsCompleted, Is.False);

        await publisher.PublishAsync("orders", "hello");

        // LISTEN/NOTIFY wakes it; no polling interval stands between.
        Assert.That((await waiting.WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("hello"));
        Assert.That(
            await Storage.DurableTestSupport.EventuallyAsync(() => publisher.GetStats("orders") == new TopicStats(0, 1, 0, 1)), Is.True,
            "held by the consumer of the other process, seen from this one");
    }

    [Test]
    public async Task NackOnOneProcess_HandsTheMessageToAConsumerWaitingOnTheOther()
    {
        await using var first = await OpenAsync();
        await using var second = await OpenAsync();
        await first.PublishAsync("t", "job");
        await using var holder = first.Subscribe("t");
        Assert.That((await holder.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("job"));
        await using var waiter = second.Subscribe("t");
        var waiting = waiter.ReceiveAsync().AsTask();

        var nacked = Stopwatch.StartNew();
        await holder.NackAsync();
        var delivery = await waiting.WaitAsync(TestSupport.Bound);
        TestContext.Out.WriteLine($"NACK on one process to delivery on the other: {nacked.Elapsed.TotalMilliseconds:F1} ms");

        Assert.That((delivery.Text(), delivery.DackCount), Is.EqualTo(("job", 0)));
    }

    [Test]
    public async Task ConcurrentNackBackDackAndTouch_ShareAFewStatements_AndEachDoesWhatItSays()
    {
        await using var engine = await _engines.OpenAsync(
            TimeProvider.System, static options => options.TopicPolicies.Add(new MiniQueueTopicPolicy { Topics = "t", Lease = TimeSpan.FromMinutes(5) }));
        const int Consumers = 40;
        for (var i = 0; i < Consumers; i++)
        {
            await engine.PublishAsync("t", $"m{i}");
        }

        var consumers = new List<MiniQueueConsumer>();
        for (var i = 0; i < Consumers; i++)
        {
            var consumer = engine.Subscribe("t");
            consumers.Add(consumer);
            Assert.That((await consumer.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo($"m{i}"));
        }

        await using var connection = new NpgsqlConnection(_engines.Database);
        await connection.OpenAsync();
        async Task<DateTime> LatestLeaseAsync()
        {
            await using var command = new NpgsqlCommand("SELECT max(lease_until) FROM miniqueue_messages", connection);
            return (DateTime)(await command.ExecuteScalarAsync())!;
        }

        var leaseBefore = await LatestLeaseAsync();
        var settles = ((PostgreSqlBackend)engine.Backend).Settles;
        var statementsBefore = settles.Statements;

        // Every settle is under way before the first is answered: the process's settle writers carry them together.
        await Task.WhenAll(consumers.Select((consumer, i) => (i % 4) switch
        {
            0 => consumer.NackAsync(),
            1 => consumer.BackAsync(),
            2 => consumer.DackAsync(TimeSpan.FromHours(1)),
            _ => consumer.TouchAsync(),
        }).Select(static settle => settle.AsTask())).WaitAsync(TestSupport.Bound);

        var statements = settles.Statements - statementsBefore;
        TestContext.Out.WriteLine($"{Consumers} settles in {statements} statements");
        Assert.That(statements, Is.InRange(1, Consumers / 4), "settles waiting together share a statement");
        Assert.That(engine.GetStats("t"), Is.EqualTo(new TopicStats(Ready: 20, Held: 10, Delayed: 10, Consumers: Consumers)));
        Assert.That(await LatestLeaseAsync(), Is.GreaterThan(leaseBefore), "the TOUCHed leases start again");
        Assert.That(consumers.Where((_, i) => i % 4 == 3).All(static consumer => consumer.IsHoldingMessage), Is.True, "a TOUCH keeps the message");
        Assert.That(consumers.Where((_, i) => i % 4 != 3).Any(static consumer => consumer.IsHoldingMessage), Is.False);
        await using (var command = new NpgsqlCommand("SELECT count(*) FROM miniqueue_messages WHERE dack_count = 1 AND due > now() + interval '50 minutes'", connection))
        {
            Assert.That(await command.ExecuteScalarAsync(), Is.EqualTo(10L), "each DACKed message is due in an hour, its DACK counted");
        }

        // The NACKed come first (at the front), then the BACKed (at the back of a topic that had nothing else ready).
        await using var reader = engine.Subscribe("t");
        var order = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            order.Add((await reader.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Text());
            await reader.AckAsync();
        }

        Assert.That(order.Take(10).Order(), Is.EqualTo(Enumerable.Range(0, 10).Select(static i => $"m{i * 4}").Order()));
        Assert.That(order.Skip(10).Order(), Is.EqualTo(Enumerable.Range(0, 10).Select(static i => $"m{(i * 4) + 1}").Order()));
        foreach (var consumer in consumers)
        {
            await consumer.DisposeAsync();
        }
    }

    [Test]
    public async Task ATopicsTaker_GoesWithItsLastConsumer_AndANewConsumerGetsANewOne()
    {
        await using var engine = await OpenAsync();
        var backend = (PostgreSqlBackend)engine.Backend;
        for (var i = 0; i < 50; i++)
        {
            var topic = $"t{i}";
            await engine.PublishAsync(topic, "x");
            await using var holder = engine.Subscribe(topic);
            Assert.That((await holder.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("x"));
            await using var waiter = engine.Subscribe(topic);
            using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
            Assert.That(async () => await waiter.ReceiveAsync(cancel.Token), Throws.InstanceOf<OperationCanceledException>());
        }

        Assert.That(await Storage.DurableTestSupport.EventuallyAsync(() => backend.Takers == 0), Is.True, "no topic has a consumer left");

        await using var again = engine.Subscribe("t7");
        Assert.That((await again.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("x"), "returned by the holder that ended");
        Assert.That(backend.Takers, Is.EqualTo(1));
    }

    [Test]
    public async Task AReceiveCancelledWhileItsTakeIsUnderWay_ItsTakeTakesNothingPublishedAfter()
    {
        await using var engine = await OpenAsync();
        var (connected, goOn, taken, finish) = PauseTakes((PostgreSqlBackend)engine.Backend);
        await using var consumer = engine.Subscribe("t");
        using var cancel = new CancellationTokenSource();
        var receive = consumer.ReceiveAsync(cancel.Token).AsTask();
        await connected.Task.WaitAsync(TestSupport.Bound);

        await cancel.CancelAsync();
        Assert.That(async () => await receive.WaitAsync(TestSupport.Bound), Throws.InstanceOf<OperationCanceledException>());
        await engine.PublishAsync("t", "m1");
        goOn.SetResult();
        await taken.Task.WaitAsync(TestSupport.Bound);

        Assert.That(engine.GetStats("t"), Is.EqualTo(new TopicStats(1, 0, 0, 1)), "the take counted who still waits: nobody, so it took nothing");
        finish.SetResult();
        Assert.That(await engine.PurgeAsync("t"), Is.EqualTo(1));
    }

    [TestCase("purge")]
    [TestCase("redrive")]
    public async Task AReceiveCancelledAfterItsTakeTookAMessage_APurgeOrARedriveWaitsForTheMessageToBeGivenBack_AndGetsIt(string operation)
    {
        await using var engine = await OpenAsync();
        var (connected, goOn, taken, finish) = PauseTakes((PostgreSqlBackend)engine.Backend);
        await using var consumer = engine.Subscribe("t.dead");
        using var cancel = new CancellationTokenSource();
        var receive = consumer.ReceiveAsync(cancel.Token).AsTask();
        await connected.Task.WaitAsync(TestSupport.Bound);
        await engine.PublishAsync("t.dead", "m1");
        goOn.SetResult();
        await taken.Task.WaitAsync(TestSupport.Bound);
        Assert.That(engine.GetStats("t.dead"), Is.EqualTo(new TopicStats(0, 1, 0, 1)), "taken for the receive still waiting");

        await cancel.CancelAsync();
        Assert.That(async () => await receive.WaitAsync(TestSupport.Bound), Throws.InstanceOf<OperationCanceledException>());
        var moved = operation == "purge" ? engine.PurgeAsync("t.dead").AsTask() : engine.RedriveAsync("t").AsTask();
        await Task.Delay(100);
        Assert.That(moved.IsCompleted, Is.False, "it waits for the take under way");
        finish.SetResult();

        Assert.That(await moved.WaitAsync(TestSupport.Bound), Is.EqualTo(1), "the message nobody receives, given back by the take");
        Assert.That(engine.GetStats("t.dead"), Is.EqualTo(new TopicStats(0, 0, 0, 1)));
        Assert.That(engine.GetStats("t").Ready, Is.EqualTo(operation == "purge" ? 0 : 1));
    }

    /// <summary>Stops the next take of <paramref name="backend"/> at each <see cref="TakeStage"/> until the test lets it go on.</summary>
    private static (TaskCompletionSource Connected, TaskCompletionSource GoOn, TaskCompletionSource Taken, TaskCompletionSource Finish) PauseTakes(PostgreSqlBackend backend)
    {
        var pauses = (Connected: NewSignal(), GoOn: NewSignal(), Taken: NewSignal(), Finish: NewSignal());
        backend.TakePause = stage =>
        {
            var (reached, release) = stage == TakeStage.Connected ? (pauses.Connected, pauses.GoOn) : (pauses.Taken, pauses.Finish);
            reached.TrySetResult();
            return release.Task;
        };
        return pauses;

        static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    [Test]
    public async Task AProcessThatStopsBeating_ItsHeldMessagesReturnToTheFront_AndGoToAnotherProcess()
    {
        await using var survivor = await OpenAsync();
        var doomed = await OpenAsync();
        await survivor.PublishAsync("t", "first");
        await survivor.PublishAsync("t", "second");
        var lost = doomed.Subscribe("t");
        Assert.That((await lost.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("first"));

        // The process goes without a word: no NACK, no heartbeat from now on.
        await ((PostgreSqlBackend)doomed.Backend).AbandonAsync();

        await using var consumer = survivor.Subscribe("t");
        Assert.That((await consumer.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("second"));
        await consumer.AckAsync();

        // Within the process lease (3 s in tests) the survivor's heartbeat returns "first" to the front.
        var returned = await consumer.ReceiveAsync().AsTask().WaitAsync(BackendEngines.ProcessLease * 3);
        Assert.That((returned.Text(), returned.DackCount), Is.EqualTo(("first", 0)));
    }

    [Test]
    public async Task TheStats_CountTheConsumersOfEveryProcess_AndForgetThoseOfAProcessThatDied()
    {
        await using var first = await OpenAsync();
        var second = await OpenAsync();
        await using var one = first.Subscribe("t");
        await using var two = first.Subscribe("t");
        var elsewhere = second.Subscribe("t");
        Assert.That(await Storage.DurableTestSupport.EventuallyAsync(() => first.GetStats("t").Consumers == 3), Is.True, "two here, one on the other");
        Assert.That(await Storage.DurableTestSupport.EventuallyAsync(() => second.GetStats("t").Consumers == 3), Is.True, "seen from either");

        await elsewhere.DisposeAsync();
        Assert.That(await Storage.DurableTestSupport.EventuallyAsync(() => first.GetStats("t").Consumers == 2), Is.True);
        var stays = second.Subscribe("t");
        Assert.That(await Storage.DurableTestSupport.EventuallyAsync(() => first.GetStats("t").Consumers == 3), Is.True);

        // The second process goes without a word: once it is taken for dead, its consumers are no longer counted.
        await ((PostgreSqlBackend)second.Backend).AbandonAsync();
        Assert.That(await Storage.DurableTestSupport.EventuallyAsync(() => first.GetStats("t").Consumers == 2), Is.True);
        _ = stays;
    }

    [Test]
    public async Task TakesPreparedWhileTheTableWasEmpty_StillUseTheIndex_OnceItHasGrown()
    {
        // Statements are prepared; a generic plan made on an empty table would scan and sort the whole table at every
        // take once it has grown (20 ms a take at 50,000 rows), until the next ANALYZE.
        await using var queue = await OpenAsync();
        await using (var analyze = NpgsqlDataSource.Create(await _engines.DatabaseAsync()))
        {
            await using var command = analyze.CreateCommand("ANALYZE miniqueue_messages");
            await command.ExecuteNonQueryAsync();
        }

        await using var consumer = queue.Subscribe("t");
        for (var i = 0; i < 12; i++)
        {
            await queue.PublishAsync("t", $"small {i}");
            await consumer.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
            await consumer.AckAsync();
        }

        await Task.WhenAll(Enumerable.Range(0, 3000).Select(i => queue.PublishAsync("t", $"grown {i}").AsTask()));
        var before = await SequentialScansAsync();
        for (var i = 0; i < 30; i++)
        {
            await consumer.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
            await consumer.AckAsync();
        }

        Assert.That(await SequentialScansAsync(), Is.EqualTo(before), "no take scanned the table");
    }

    /// <summary>How many sequential scans of miniqueue_messages the database has counted (after its backends report them).</summary>
    private async Task<long> SequentialScansAsync()
    {
        await Task.Delay(TimeSpan.FromSeconds(1.5));
        await using var connection = new NpgsqlConnection(await _engines.DatabaseAsync());
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT pg_stat_clear_snapshot(); SELECT seq_scan FROM pg_stat_user_tables WHERE relname = 'miniqueue_messages'", connection);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.NextResultAsync();
        await reader.ReadAsync();
        return reader.GetInt64(0);
    }

    [Test]
    public async Task ProcessesStartingTogether_OnANewDatabase_CreateTheSchemaOnce()
    {
        var engines = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => OpenAsync().AsTask()));
        try
        {
            await using var connection = new NpgsqlConnection(_engines.Database);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT count(*), max(version) FROM miniqueue_schema", connection);
            await using var reader = await command.ExecuteReaderAsync();
            await reader.ReadAsync();
            Assert.That((reader.GetInt64(0), reader.GetInt32(1)), Is.EqualTo(((long)PostgreSqlSchema.Version, PostgreSqlSchema.Version)));
        }
        finally
        {
            foreach (var engine in engines)
            {
                await engine.DisposeAsync();
            }
        }
    }

    [Test]
    public async Task ADatabaseOfANewerSchema_IsRefused()
    {
        await (await OpenAsync()).DisposeAsync();
        await using (var connection = new NpgsqlConnection(_engines.Database))
        {
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("INSERT INTO miniqueue_schema (version) VALUES (99)", connection);
            await command.ExecuteNonQueryAsync();
        }

        Assert.That(async () => await OpenAsync(), Throws.TypeOf<MiniQueueStoreException>().With.Message.Contains("newer"));
    }

    [Test]
    public void ADatabaseThatCannotBeReached_IsAClearError()
    {
        var nowhere = new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = Host.HostProcess.FreePort(), Username = "postgres", Timeout = 2 };

        Assert.That(
            async () => await MiniQueuePostgreSql.OpenAsync(nowhere.ConnectionString),
            Throws.TypeOf<MiniQueueStoreException>().With.Message.StartsWith("The PostgreSQL database could not be opened"));
    }

    [Test]
    public async Task TheDatabaseStopsAndComesBack_PublishesFailMeanwhile_ThenEverythingWorksWithoutARestart_AndNothingIsLost()
    {
        var cluster = await PostgreSqlCluster.SharedAsync();
        await using var queue = await OpenAsync();
        await queue.PublishAsync("kept", "published before");
        await using var waiter = queue.Subscribe("later");
        var waiting = waiter.ReceiveAsync().AsTask();

        await cluster.WhileStoppedAsync("immediate", () =>
        {
            Assert.That(async () => await queue.PublishAsync("later", "refused"), Throws.TypeOf<MiniQueueStoreException>());
            Assert.That(queue.IsWritable, Is.False, "the health check reports it");
            Assert.That(waiting.IsCompleted, Is.False, "a waiting consumer waits on");
            return Task.CompletedTask;
        });

        // Back by itself: the pool's broken connections fail once each, then publishes are taken again.
        Assert.That(await Storage.DurableTestSupport.PublishEventuallyAsync(queue, "later", "published after"), Is.True);
        Assert.That(await Storage.DurableTestSupport.EventuallyAsync(() => queue.IsWritable), Is.True);
        Assert.That((await waiting.WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("published after"), "the waiting consumer got it");
        await waiter.AckAsync();

        await using var consumer = queue.Subscribe("kept");
        Assert.That((await consumer.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("published before"));
        await consumer.AckAsync();
        Assert.That(queue.GetStats("later"), Is.EqualTo(new TopicStats(0, 0, 0, 1)), "the refused publish is not there");
    }

    [Test]
    public async Task AReturnThatFailedWhileTheDatabaseWasAway_ComesBackOnceItIsBack_WhileTheProcessLives()
    {
        var cluster = await PostgreSqlCluster.SharedAsync();
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "held");
        var consumer = queue.Subscribe("t");
        Assert.That((await consumer.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("held"));

        // A clean stop keeps the take (a crash may undo it, and the message would be free again without a reconcile).
        // The consumer goes while holding: its message cannot be returned now.
        await cluster.WhileStoppedAsync("fast", () => consumer.DisposeAsync().AsTask());

        // This process beats on, so no other process would return it: it reconciles its own holds at its next beat.
        await using var next = queue.Subscribe("t");
        var delivery = await next.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
        Assert.That((delivery.Text(), delivery.DackCount), Is.EqualTo(("held", 0)));
    }

    [Test]
    public async Task AnAckMadeWhileTheDatabaseIsAway_IsCarriedOnceItIsBack_AndItsMessageIsNotDeliveredAgain()
    {
        var cluster = await PostgreSqlCluster.SharedAsync();
        await using var queue = await OpenAsync();
        await queue.PublishAsync("t", "acked");
        await using var consumer = queue.Subscribe("t");
        Assert.That((await consumer.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("acked"));

        // A clean stop: a crash (-m immediate) may undo the take itself, which commits without waiting for the disk, and
        // the message would then rightly be delivered again (at-least-once; see docs/shared-mode.md).
        await cluster.WhileStoppedAsync("fast", async () =>
        {
            // An ACK does not wait for the database; it is tried again until the database takes it.
            await consumer.AckAsync();
            Assert.That(consumer.IsHoldingMessage, Is.False);
        });

        Assert.That(await Storage.DurableTestSupport.PublishEventuallyAsync(queue, "t", "after"), Is.True);
        var delivery = await consumer.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
        Assert.That(delivery.Text(), Is.EqualTo("after"), "the ACKed message is gone");
        await consumer.AckAsync();
        Assert.That(queue.GetStats("t"), Is.EqualTo(new TopicStats(0, 0, 0, 1)));
    }

    [Test]
    public async Task ADatabaseOfTheFirstSchema_IsMigrated_AndItsMessagesAreKept()
    {
        await using (var database = NpgsqlDataSource.Create(await _engines.DatabaseAsync()))
        {
            await PostgreSqlSchema.MigrateAsync(database, 1, CancellationToken.None);
            await using var insert = database.CreateCommand("""
                INSERT INTO miniqueue_messages (id, topic, body, cls, seq) VALUES (nextval('miniqueue_seq'), 'old', 'kept'::bytea, 2, 1);
                INSERT INTO miniqueue_topics (name) VALUES ('old');
                """);
            await insert.ExecuteNonQueryAsync();
        }

        await using var queue = await OpenAsync();
        await using var consumer = queue.Subscribe("old");
        Assert.That((await consumer.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("kept"));
        await consumer.AckAsync();

        await using var connection = new NpgsqlConnection(_engines.Database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'miniqueue_messages'", connection);
        Assert.That(await command.ExecuteScalarAsync(), Is.EqualTo("miniqueue_messages_lease,miniqueue_messages_next,miniqueue_messages_pkey"));
    }
}
