using MiniQueue.Storage;
using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Engine;

/// <summary>
/// Reclaiming log space, on an in-memory log with 20-record segments: consumed messages are truncated away, live ones
/// that would pin old segments are copied forward with a checkpoint, and a crash after any of it recovers the same state.
/// </summary>
[CancelAfter(60_000)]
public sealed class CompactionTests
{
    private const int SegmentRecords = 20;

    private static async Task<MiniQueueEngine> OpenAsync(ILogStore store, TimeProvider? clock = null, long bodyCacheBytes = 0) =>
        await MiniQueueEngine.OpenAsync(
            new MiniQueueOptions { TimeProvider = clock ?? TestSupport.NewClock(), BodyCacheBytes = bodyCacheBytes }, store, default);

    private static Task<List<(string Text, int DackCount)>> DrainAsync(MiniQueueEngine queue, string topic) =>
        Storage.DurableTestSupport.DrainAsync(queue, topic);

    /// <summary>Publishes, receives and ACKs <paramref name="count"/> messages on a topic of their own, compacting as it goes.</summary>
    private static async Task TrafficAsync(MiniQueueEngine queue, int count, string topic = "traffic")
    {
        await using var consumer = queue.Subscribe(topic);
        for (var i = 0; i < count; i++)
        {
            await queue.PublishAsync(topic, $"x{i}");
            await consumer.ReceiveTextAsync();
            await consumer.AckAsync();
            if (i % 10 == 0)
            {
                await queue.CompactAsync();
            }
        }

        await queue.CompactAsync();
    }

    [Test]
    public async Task SteadyPublishAndAck_KeepsTheLogBounded()
    {
        var store = new InMemoryLogStore(segmentRecords: SegmentRecords);
        await using var queue = await OpenAsync(store);

        await TrafficAsync(queue, 2_000);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(store.TailAddress, Is.GreaterThan(5_000), "each message wrote several records");
            Assert.That(store.Count, Is.LessThanOrEqualTo(3 * SegmentRecords), "consumed messages were truncated away");
        }
    }

    [Test]
    public async Task AMessageHeldForALongTime_DoesNotPinTheLog_AndSurvivesACrash()
    {
        var store = new InMemoryLogStore(segmentRecords: SegmentRecords);
        var queue = await OpenAsync(store);
        await queue.PublishAsync("slow", "held for ages");
        await queue.PublishAsync("slow", "next");
        var holder = queue.Subscribe("slow");
        Assert.That(await holder.ReceiveTextAsync(), Is.EqualTo("held for ages"));

        await TrafficAsync(queue, 1_000);

        Assert.That(store.Count, Is.LessThanOrEqualTo(4 * SegmentRecords));
        Assert.That(store.BeginAddress, Is.GreaterThan(1_000), "the held message's publish record is long gone");

        // The holder dies with the process; after the crash its message is back at the front, body intact.
        await using var recovered = await OpenAsync(store.CrashCopy());
        Assert.That((await DrainAsync(recovered, "slow")).Select(m => m.Text), Is.EqualTo(new[] { "held for ages", "next" }));
    }

    [Test]
    public async Task AHeldMessageWhoseBodyMoved_IsStillSettledNormally()
    {
        var store = new InMemoryLogStore(segmentRecords: SegmentRecords);
        await using var queue = await OpenAsync(store);
        await queue.PublishAsync("slow", "moved");
        var holder = queue.Subscribe("slow");
        await holder.ReceiveTextAsync();

        await TrafficAsync(queue, 500);
        await holder.NackAsync();

        await using var reader = queue.Subscribe("slow");
        Assert.That(await reader.ReceiveTextAsync(), Is.EqualTo("moved"), "the body is read from its new place");
    }

    [Test]
    public async Task ALongDelay_KeepsItsDueTimeAndCount_ThroughCompactionAndACrash()
    {
        var clock = TestSupport.NewClock();
        var store = new InMemoryLogStore(segmentRecords: SegmentRecords);
        var queue = await OpenAsync(store, clock);
        await queue.PublishAsync("later", "delayed");
        var consumer = queue.Subscribe("later");
        await consumer.ReceiveTextAsync();
        await consumer.DackAsync(TimeSpan.FromHours(1));

        await TrafficAsync(queue, 1_000);
        Assert.That(store.BeginAddress, Is.GreaterThan(1_000));

        var after = TestSupport.NewClock();
        after.SetUtcNow(clock.GetUtcNow());
        await using var recovered = await OpenAsync(store.CrashCopy(), after);
        Assert.That(recovered.GetStats("later"), Is.EqualTo(new TopicStats(0, 0, 1, 0)));
        after.Advance(TimeSpan.FromHours(1));
        Assert.That(await DrainAsync(recovered, "later"), Is.EqualTo(new[] { ("delayed", 1) }));
    }

    [Test]
    public async Task ABacklogReorderedByNackBackAndDack_KeepsItsOrder_ThroughCompactionAndACrash()
    {
        var clock = TestSupport.NewClock();
        var store = new InMemoryLogStore(segmentRecords: SegmentRecords);
        var queue = await OpenAsync(store, clock);
        foreach (var text in new[] { "a", "b", "c", "d", "e", "f" })
        {
            await queue.PublishAsync("mixed", text);
        }

        var first = queue.Subscribe("mixed");
        var second = queue.Subscribe("mixed");
        await first.ReceiveTextAsync();           // a
        await first.BackAsync();                  // b c d e f a
        await first.ReceiveTextAsync();           // b
        await first.DackAsync(TimeSpan.Zero);     // b is due now: b, then c d e f a
        await second.ReceiveTextAsync();          // b
        await first.ReceiveTextAsync();           // c
        await first.NackAsync();                  // c d e f a; b held by second
        await second.DackAsync(TimeSpan.FromSeconds(30));   // c d e f a; b due in 30 s

        await TrafficAsync(queue, 1_000);
        Assert.That(store.BeginAddress, Is.GreaterThan(1_000));

        clock.Advance(TimeSpan.FromSeconds(30));
        var after = TestSupport.NewClock();
        after.SetUtcNow(clock.GetUtcNow());
        await using var recovered = await OpenAsync(store.CrashCopy(), after);

        Assert.That(await DrainAsync(recovered, "mixed"), Is.EqualTo(new[] { ("c", 0), ("b", 2), ("d", 0), ("e", 0), ("f", 0), ("a", 0) }));
    }

    [Test]
    public async Task ALiveBacklog_IsNotCopiedOverAndOver()
    {
        var store = new InMemoryLogStore(segmentRecords: SegmentRecords);
        await using var queue = await OpenAsync(store);
        for (var i = 0; i < 200; i++)
        {
            await queue.PublishAsync("backlog", $"b{i}");
        }

        var tail = store.TailAddress;
        await queue.CompactAsync();

        Assert.That(store.TailAddress, Is.EqualTo(tail), "live data filling the old segments stays where it is");
        Assert.That(store.BeginAddress, Is.Zero);
    }

    [Test]
    public async Task RecoveryAfterCompaction_ReplaysOnlyTheLiveTailOfTheLog()
    {
        var store = new InMemoryLogStore(segmentRecords: SegmentRecords);
        await using (var queue = await OpenAsync(store))
        {
            await queue.PublishAsync("kept", "still here");
            await TrafficAsync(queue, 3_000);
        }

        await using var reopened = await OpenAsync(store);

        Assert.That(reopened.RecoveredRecords, Is.LessThan(4 * SegmentRecords), "not the 9,000 records ever written");
        Assert.That((await DrainAsync(reopened, "kept")).Select(m => m.Text), Is.EqualTo(new[] { "still here" }));
    }

    [Test]
    public async Task BodiesKeptInMemory_AreCopiedWithoutReadingTheLog()
    {
        var store = new InMemoryLogStore(segmentRecords: SegmentRecords);
        var queue = await OpenAsync(store, bodyCacheBytes: 1024);
        await queue.PublishAsync("slow", "cached body");
        var holder = queue.Subscribe("slow");
        await holder.ReceiveTextAsync();

        await TrafficAsync(queue, 500);

        Assert.That(queue.CachedBodyBytes, Is.EqualTo(MiniQueue.Storage.BodyCache.Footprint("cached body".Length)), "only the held message's body is still cached");
        await using var recovered = await OpenAsync(store.CrashCopy());
        Assert.That((await DrainAsync(recovered, "slow")).Select(m => m.Text), Is.EqualTo(new[] { "cached body" }));
    }
}

/// <summary>A store that passes everything to another; test stores override what they change.</summary>
internal abstract class DelegatingStore(ILogStore inner) : ILogStore
{
    private static readonly AsyncLocal<bool> s_isTestFlow = new();

    /// <summary>
    /// Whether the store is called from the code the test marked with <see cref="MarkTestFlow"/>, not from the engine's
    /// background maintenance, which reads and appends too and must not be caught by a gate meant for the test.
    /// </summary>
    protected static bool IsTestFlow => s_isTestFlow.Value;

    /// <summary>Marks what the caller starts until the returned scope ends (calls capture it as they start).</summary>
    public static IDisposable MarkTestFlow()
    {
        s_isTestFlow.Value = true;
        return new FlowScope();
    }

    public bool CanRead => inner.CanRead;

    public bool HasRoom => inner.HasRoom;

    public long SegmentSize => inner.SegmentSize;

    public long PageSize => inner.PageSize;

    public int RecordLimit => inner.RecordLimit;

    public long BeginAddress => inner.BeginAddress;

    public long TailAddress => inner.TailAddress;

    public bool IsFaulted => inner.IsFaulted;

    public bool IsLowOnSpace => inner.IsLowOnSpace;

    public bool LacksSpaceFor(long footprint) => inner.LacksSpaceFor(footprint);

    public bool RefreshSpace() => inner.RefreshSpace();

    public bool CanSpend(long bytes) => inner.CanSpend(bytes);

    public ValueTask WaitForRoomAsync(CancellationToken cancellationToken = default) => inner.WaitForRoomAsync(cancellationToken);

    public ValueTask<IDisposable> HoldCommitsAsync(CancellationToken cancellationToken = default) => inner.HoldCommitsAsync(cancellationToken);

    public long FootprintOf(int serializedLength) => inner.FootprintOf(serializedLength);

    public virtual long Append(LogRecord record) => inner.Append(record);

    /// <summary>In terms of the overridable members, so that a test store that changes them changes publishes too.</summary>
    public virtual long AppendPublish(LogRecord record, out ValueTask durable)
    {
        var address = Append(record);
        durable = IsCommitted(address) ? ValueTask.CompletedTask : WaitForCommitAsync(address);
        return address;
    }

    public virtual bool IsCommitted(long address) => inner.IsCommitted(address);

    public virtual ValueTask WaitForCommitAsync(long address, CancellationToken cancellationToken = default) => inner.WaitForCommitAsync(address, cancellationToken);

    public virtual ValueTask<ReadOnlyMemory<byte>> ReadAsync(long address, int lengthHint = 0, CancellationToken cancellationToken = default) =>
        inner.ReadAsync(address, lengthHint, cancellationToken);

    public virtual byte[]?[] ReadCommittedRecords(IReadOnlyList<(long Address, int Length)> records) => inner.ReadCommittedRecords(records);

    public IAsyncEnumerable<StoredRecord> ReplayAsync(CancellationToken cancellationToken = default) => inner.ReplayAsync(cancellationToken);

    public void TruncateUntil(long address) => inner.TruncateUntil(address);

    public ValueTask<bool> TryRecoverAsync(CancellationToken cancellationToken = default) => inner.TryRecoverAsync(cancellationToken);

    public ValueTask DisposeAsync() => inner.DisposeAsync();

    private sealed class FlowScope : IDisposable
    {
        public void Dispose() => s_isTestFlow.Value = false;
    }
}

/// <summary>A store over an <see cref="InMemoryLogStore"/> that can hold the test's next read at a gate the test opens.</summary>
internal sealed class GatedReadStore(InMemoryLogStore inner) : DelegatingStore(inner)
{
    private TaskCompletionSource? _nextReadGate;

    /// <summary>Makes the test's next read wait until the returned gate is opened; later reads go straight through.</summary>
    public TaskCompletionSource HoldNextRead()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _nextReadGate = gate;
        return gate;
    }

    public override async ValueTask<ReadOnlyMemory<byte>> ReadAsync(long address, int lengthHint = 0, CancellationToken cancellationToken = default)
    {
        if (IsTestFlow && Interlocked.Exchange(ref _nextReadGate, null) is { } gate)
        {
            await gate.Task;
        }

        return await base.ReadAsync(address, lengthHint, cancellationToken);
    }
}

[CancelAfter(30_000)]
public sealed class CompactionRaceTests
{
    [Test]
    public async Task ABodyReadInFlight_WhenCompactionMovesTheBodyAndFreesItsPlace_IsReadAgainAtTheNewPlace()
    {
        var inner = new InMemoryLogStore(segmentRecords: 20);
        var store = new GatedReadStore(inner);
        await using var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { TimeProvider = TestSupport.NewClock(), BodyCacheBytes = 0 }, store, default);
        await queue.PublishAsync("slow", "moving body");
        await using var traffic = queue.Subscribe("traffic");
        for (var i = 0; i < 100; i++)
        {
            await queue.PublishAsync("traffic", $"x{i}");
            await traffic.ReceiveTextAsync();
            await traffic.AckAsync();
        }

        // The consumer takes the message; its body read waits at the gate while compaction moves it.
        // Only the consumer's read is held: background compaction reads bodies too, and holding one of those would
        // leave the test's compaction waiting for it for ever.
        var gate = store.HoldNextRead();
        await using var consumer = queue.Subscribe("slow");
        Task<Delivery> receiving;
        using (DelegatingStore.MarkTestFlow())
        {
            receiving = consumer.ReceiveAsync().AsTask();
        }

        Assert.That(receiving.IsCompleted, Is.False, "the consumer's read waits at the gate");
        await queue.CompactAsync().AsTask().WaitAsync(TestSupport.Bound);
        Assert.That(inner.BeginAddress, Is.GreaterThan(1), "the body's old place is gone");
        gate.SetResult();

        Assert.That((await receiving.WaitAsync(TestSupport.Bound)).Text(), Is.EqualTo("moving body"));
    }

    [Test]
    public async Task APublishWhoseRecordCompactionCopiesForward_BeforeItsPublisherIsTold_BecomesVisibleAllTheSame()
    {
        var inner = new InMemoryLogStore(segmentRecords: 20);
        var store = new SlowPublishStore(inner);
        await using var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { TimeProvider = TestSupport.NewClock() }, store, default);
        await using var traffic = queue.Subscribe("traffic");
        async Task TrafficAsync(int count)
        {
            for (var i = 0; i < count; i++)
            {
                await queue.PublishAsync("traffic", $"x{i}");
                await traffic.ReceiveTextAsync();
                await traffic.AckAsync();
            }
        }

        await TrafficAsync(50);

        // The publish's record is committed, but its publisher has not been told yet when compaction copies the record
        // forward (its segment is otherwise consumed traffic) and frees the old place.
        var told = store.HoldNextPublishersCommit();
        Task publishing;
        using (DelegatingStore.MarkTestFlow())
        {
            publishing = queue.PublishAsync("slow", "durable, then moved").AsTask();
        }

        var firstAddress = store.LastPublishAddress;
        await TrafficAsync(50);

        // A pass first frees what needs no copying (the segments before the record's), unless background maintenance did
        // already; the next one copies the record forward. Two passes, whichever way the race with the background went.
        for (var pass = 0; pass < 2 && inner.BeginAddress <= firstAddress; pass++)
        {
            await queue.CompactAsync().AsTask().WaitAsync(TestSupport.Bound);
        }

        Assert.That(inner.BeginAddress, Is.GreaterThan(firstAddress), "the record's first place was freed");
        told.SetResult();
        await publishing.WaitAsync(TestSupport.Bound);

        await using var consumer = queue.Subscribe("slow");
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("durable, then moved"));
    }
}

/// <summary>
/// A store over an <see cref="InMemoryLogStore"/> that can make one publish record look not yet committed, and hold its
/// publisher's wait for the commit, until the test opens a gate: the publisher's continuation running late.
/// </summary>
internal sealed class SlowPublishStore(InMemoryLogStore inner) : DelegatingStore(inner)
{
    private TaskCompletionSource? _armed;
    private TaskCompletionSource? _gate;
    private long _heldAddress = -1;

    public long LastPublishAddress { get; private set; } = -1;

    /// <summary>Holds the commit wait of the test's next publish until the returned gate is opened.</summary>
    public TaskCompletionSource HoldNextPublishersCommit()
    {
        _armed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        return _armed;
    }

    public override long Append(LogRecord record)
    {
        var address = base.Append(record);
        if (record.Kind == LogRecordKind.Publish && IsTestFlow)
        {
            LastPublishAddress = address;
            if (Interlocked.Exchange(ref _armed, null) is { } gate)
            {
                _gate = gate;
                _heldAddress = address;
            }
        }

        return address;
    }

    public override bool IsCommitted(long address) => address != Volatile.Read(ref _heldAddress) && base.IsCommitted(address);

    public override async ValueTask WaitForCommitAsync(long address, CancellationToken cancellationToken = default)
    {
        await base.WaitForCommitAsync(address, cancellationToken);
        if (address == Volatile.Read(ref _heldAddress) && _gate is { } gate)
        {
            await gate.Task.WaitAsync(cancellationToken);
        }
    }
}
