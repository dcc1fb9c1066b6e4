using MiniQueue.Storage;

namespace MiniQueue.Tests.Storage;

/// <summary>The engine on a real FasterLog in a temp folder: durability, recovery, refusal of wrong settings, faults.</summary>
[CancelAfter(60_000)]
public sealed class DurableEngineTests
{
    [Test]
    public async Task ALongLog_KeepsOnlyTheSegmentsNearItsTailOpen()
    {
        if (!Directory.Exists("/proc/self/fd"))
        {
            Assert.Ignore("Counts the process's open files through /proc/self/fd, which only Linux has.");
        }

        using var directory = new TempDirectory();
        await using var queue = await DurableTestSupport.OpenAsync(DurableTestSupport.SmallLog(directory.Path));

        // 2,000 bodies of 1 KiB fill about eight 256 KiB segments; nothing consumes them, so none is let go.
        var body = new byte[1024];
        for (var i = 0; i < 2000; i++)
        {
            await queue.PublishAsync("t", body);
        }

        var segments = Directory.GetFiles(directory.Path, "wal.log.*").Length;
        var open = Directory.GetFiles("/proc/self/fd")
            .Select(static fd => new FileInfo(fd).LinkTarget)
            .Where(target => target is not null && target.StartsWith(Path.Combine(directory.Path, "wal.log."), StringComparison.Ordinal))
            .Distinct()
            .ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(segments, Is.GreaterThanOrEqualTo(6), "the log spans many segments");

            // The two segments at the tail (written), and the first one (FasterLog's device keeps what recovery read open).
            Assert.That(open, Has.Count.LessThanOrEqualTo(3), "segments open, not one per segment: " + string.Join(", ", open));
        }
    }

    [Test]
    public async Task Restart_RecoversEverything_ReadyInOrder_DelayedWithDueTimeAndCount_HeldAtTheFront_PurgedGone()
    {
        using var directory = new TempDirectory();
        var clock = TestSupport.NewClock();
        await using (var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { DataDirectory = directory.Path, TimeProvider = clock }))
        {
            foreach (var text in new[] { "held", "delayed", "r1", "r2", "r3" })
            {
                await queue.PublishAsync("t", text);
            }

            await queue.PublishAsync("gone", "purged");
            await queue.PurgeAsync("gone");
            var holder = queue.Subscribe("t");
            Assert.That(await holder.ReceiveTextAsync(), Is.EqualTo("held"));
            var dacker = queue.Subscribe("t");
            Assert.That(await dacker.ReceiveTextAsync(), Is.EqualTo("delayed"));
            await dacker.DackAsync(TimeSpan.FromMinutes(10));
            var acker = queue.Subscribe("t");
            Assert.That(await acker.ReceiveTextAsync(), Is.EqualTo("r1"));
            await acker.AckAsync();

            // Disposing the engine returns "held" to the front, as a crash would on recovery.
        }

        var later = TestSupport.NewClock();
        later.SetUtcNow(clock.GetUtcNow());
        await using var reopened = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { DataDirectory = directory.Path, TimeProvider = later });

        using (Assert.EnterMultipleScope())
        {
            Assert.That(reopened.GetStats("t"), Is.EqualTo(new TopicStats(3, 0, 1, 0)));
            Assert.That(reopened.GetStats("gone").Ready, Is.Zero);
            Assert.That((await DurableTestSupport.DrainAsync(reopened, "t")).Select(m => m.Text), Is.EqualTo(new[] { "held", "r2", "r3" }));
        }

        later.Advance(TimeSpan.FromMinutes(10));
        Assert.That(await DurableTestSupport.DrainAsync(reopened, "t"), Is.EqualTo(new[] { ("delayed", 1) }));
    }

    [Test]
    public async Task Publish_IsDurableWhenItCompletes()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        await using var queue = await DurableTestSupport.OpenAsync(options);
        var store = (FasterLogStore)queue.Store;

        await queue.PublishAsync("t", "one");

        Assert.That(store.CommittedUntilAddress, Is.EqualTo(store.TailAddress), "the publish record is committed");
    }

    [Test]
    public async Task HoldingCommits_KeepsEveryCommitOut_UntilReleased_OneHolderAtATime()
    {
        using var directory = new TempDirectory();
        await using var queue = await DurableTestSupport.OpenAsync(DurableTestSupport.SmallLog(directory.Path));
        var store = (FasterLogStore)queue.Store;

        // Commits overlap (more than one may be in flight); a holder waits for all of them and lets none start.
        var publishers = Enumerable.Range(0, 16).Select(i => queue.PublishAsync("t", $"before {i}").AsTask()).ToArray();
        var hold = await store.HoldCommitsAsync().AsTask().WaitAsync(TestSupport.Bound);
        var committed = store.CommittedUntilAddress;
        var publishing = queue.PublishAsync("t", "waits for the holder").AsTask();
        var second = store.HoldCommitsAsync().AsTask();

        await Task.Delay(200);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(publishing.IsCompleted, Is.False, "no commit while commits are held");
            Assert.That(store.CommittedUntilAddress, Is.EqualTo(committed));
            Assert.That(second.IsCompleted, Is.False, "a second holder waits for the first");
        }

        hold.Dispose();
        (await second.WaitAsync(TestSupport.Bound)).Dispose();
        await publishing.WaitAsync(TestSupport.Bound);
        await Task.WhenAll(publishers).WaitAsync(TestSupport.Bound);
        Assert.That(store.CommittedUntilAddress, Is.EqualTo(store.TailAddress));
    }

    [Test]
    public async Task ConcurrentPublishers_ShareCommits()
    {
        using var directory = new TempDirectory();
        await using var queue = await DurableTestSupport.OpenAsync(DurableTestSupport.SmallLog(directory.Path));
        var store = (FasterLogStore)queue.Store;
        var before = store.Commits;

        await Task.WhenAll(Enumerable.Range(0, 64).Select(p => Task.Run(async () =>
        {
            for (var i = 0; i < 20; i++)
            {
                await queue.PublishAsync("t", $"{p}:{i}");
            }
        })));

        Assert.That(queue.GetStats("t").Ready, Is.EqualTo(64 * 20));
        Assert.That(store.Commits - before, Is.LessThan(64 * 20), "group commit: publishers that arrive during a commit share the next one");
    }

    [Test]
    public async Task BodiesNotInMemory_AreReadBackFromTheLog()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        options.BodyCacheBytes = 0;
        await using var queue = await DurableTestSupport.OpenAsync(options);
        var bodies = Enumerable.Range(0, 200).Select(i => new string((char)('a' + (i % 26)), 100 + i)).ToList();
        foreach (var body in bodies)
        {
            await queue.PublishAsync("t", body);
        }

        Assert.That(queue.CachedBodyBytes, Is.Zero);
        Assert.That((await DurableTestSupport.DrainAsync(queue, "t")).Select(m => m.Text), Is.EqualTo(bodies));
    }

    [Test]
    public async Task TheBodyCache_CountsTheMemoryABodyTakes_NotOnlyItsBytes()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);

        // Room for 100 bodies of 10 bytes as they lie in memory (24 + 16 bytes each), not for 400.
        options.BodyCacheBytes = 100 * 40;
        await using var queue = await DurableTestSupport.OpenAsync(options);
        for (var i = 0; i < 400; i++)
        {
            await queue.PublishAsync("t", $"body {i:D5}");
        }

        Assert.That(queue.CachedBodyBytes, Is.EqualTo(100 * 40));

        // The first 100 were cached, the others not: once those are ACKed, the cache is empty.
        var drained = new List<(string Text, int DackCount)>();
        await using (var consumer = queue.Subscribe("t"))
        {
            for (var i = 0; i < 100; i++)
            {
                drained.Add(((await consumer.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound)).Text(), 0));
                await consumer.AckAsync();
            }
        }

        Assert.That(queue.CachedBodyBytes, Is.Zero, "only the first 100 bodies were kept in memory");
        drained.AddRange(await DurableTestSupport.DrainAsync(queue, "t"));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(drained.Select(m => m.Text), Is.EqualTo(Enumerable.Range(0, 400).Select(i => $"body {i:D5}")), "cached or read back, all in order");
            Assert.That(queue.CachedBodyBytes, Is.Zero);
        }
    }

    [Test]
    public async Task ChangedLogSettings_AreRefused_WithAClearError()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            await queue.PublishAsync("t", "kept");
        }

        var other = DurableTestSupport.SmallLog(directory.Path);
        other.LogSegmentBytes = 512 * 1024;
        var refused = Assert.ThrowsAsync<MiniQueueStoreException>(async () => await MiniQueueEngine.OpenAsync(other));
        Assert.That(refused!.Message, Does.Contain("LogSegmentBytes 524288").And.Contain("262144"));

        var otherPage = DurableTestSupport.SmallLog(directory.Path);
        otherPage.LogPageBytes = 128 * 1024;
        otherPage.LogSegmentBytes = null;
        Assert.ThrowsAsync<MiniQueueStoreException>(async () => await MiniQueueEngine.OpenAsync(otherPage));

        // Unset settings take the directory's own, and the data is intact.
        await using var reopened = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { DataDirectory = directory.Path, MaxMessageBytes = 1024 });
        Assert.That((await DurableTestSupport.DrainAsync(reopened, "t")).Select(m => m.Text), Is.EqualTo(new[] { "kept" }));
    }

    [Test]
    public async Task ALogWithoutItsManifest_IsRefused()
    {
        using var directory = new TempDirectory();
        await using (var queue = await DurableTestSupport.OpenAsync(DurableTestSupport.SmallLog(directory.Path)))
        {
            await queue.PublishAsync("t", "x");
        }

        File.Delete(Path.Combine(directory.Path, StoreManifest.FileName));

        var refused = Assert.ThrowsAsync<MiniQueueStoreException>(async () => await MiniQueueEngine.OpenAsync(DurableTestSupport.SmallLog(directory.Path)));
        Assert.That(refused!.Message, Does.Contain("manifest.json"));
    }

    [Test]
    public async Task GarbageAfterTheLastCommit_IsIgnored_AndTheLogKeepsWorking()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            for (var i = 0; i < 50; i++)
            {
                await queue.PublishAsync("t", $"m{i}");
            }
        }

        // A torn write after the last commit: random bytes where the next records would have gone.
        var segment = Path.Combine(directory.Path, directory.LogFiles()[^1]);
        await using (var file = new FileStream(segment, FileMode.Open, FileAccess.Write))
        {
            file.Seek(0, SeekOrigin.End);
            file.Write(Enumerable.Range(0, 3000).Select(i => (byte)(i * 31 + 7)).ToArray());
        }

        await using (var reopened = await DurableTestSupport.OpenAsync(options))
        {
            Assert.That(reopened.GetStats("t").Ready, Is.EqualTo(50));
            await reopened.PublishAsync("t", "after");
        }

        await using var again = await DurableTestSupport.OpenAsync(options);
        var drained = await DurableTestSupport.DrainAsync(again, "t");
        Assert.That(drained.Select(m => m.Text), Is.EqualTo(Enumerable.Range(0, 50).Select(i => $"m{i}").Append("after")));
    }

    [Test]
    public async Task DamageInsideTheCommittedLog_IsRefused_NotSilentlySkipped()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            // Several 64 KiB pages, so the damaged one is read from disk with its checksums checked.
            for (var i = 0; i < 400; i++)
            {
                await queue.PublishAsync("t", new string('x', 1000));
            }
        }

        var segment = Path.Combine(directory.Path, directory.LogFiles()[0]);
        await using (var file = new FileStream(segment, FileMode.Open, FileAccess.ReadWrite))
        {
            file.Seek(5000, SeekOrigin.Begin);
            var b = file.ReadByte();
            file.Seek(5000, SeekOrigin.Begin);
            file.WriteByte((byte)(b ^ 0x5A));
        }

        var refused = Assert.ThrowsAsync<MiniQueueStoreException>(async () => await DurableTestSupport.OpenAsync(options));
        Assert.That(refused!.Message, Does.Contain("damaged"));
    }

    [Test]
    public async Task IntervalCommitMode_AcknowledgesBeforeTheCommit_AndStillPersists()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        options.CommitMode = MiniQueueCommitMode.Interval;
        options.CommitInterval = TimeSpan.FromMilliseconds(5);
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            for (var i = 0; i < 100; i++)
            {
                await queue.PublishAsync("t", $"m{i}");
            }
        }

        await using var reopened = await DurableTestSupport.OpenAsync(options);
        Assert.That(reopened.GetStats("t").Ready, Is.EqualTo(100));
    }

    [Test]
    public async Task AFullDisk_FailsPublishesClearly_KeepsWhatWasAcknowledged_AndRecoversWhenSpaceReturns()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        var disk = new SimulatedDisk();
        var acknowledged = new List<string>();
        await using (var queue = await DurableTestSupport.OpenAsync(options, path => new FaultInjectingDevice(path, disk)))
        {
            for (var i = 0; i < 10; i++)
            {
                await queue.PublishAsync("t", $"before{i}");
                acknowledged.Add($"before{i}");
            }

            await using var consumer = queue.Subscribe("t");
            Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("before0"));

            // The disk fills while the consumer holds before0: its ACK is applied, but its record cannot reach the disk
            // now. It must reach the log once the store takes records again (no background commit decides the outcome).
            disk.Full = true;
            await consumer.AckAsync();
            acknowledged.Remove("before0");
            Assert.ThrowsAsync<MiniQueueStoreException>(async () => await queue.PublishAsync("t", "refused-1"));
            Assert.ThrowsAsync<MiniQueueStoreException>(async () => await queue.PublishAsync("t", "refused-2"));

            // Consumers keep working on what was stored, and the store stays refused while the disk is full.
            Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("before1"));
            await consumer.NackAsync();
            await Task.Delay(300);
            Assert.ThrowsAsync<MiniQueueStoreException>(async () => await queue.PublishAsync("t", "refused-3"));
            Assert.That(queue.IsWritable, Is.False);

            disk.Full = false;
            Assert.That(await DurableTestSupport.PublishEventuallyAsync(queue, "t", "after"), Is.True, "publishing works again once the disk has room");
            acknowledged.Add("after");
            Assert.That(disk.FailedWrites, Is.Positive);
        }

        await using var reopened = await DurableTestSupport.OpenAsync(options);
        var drained = (await DurableTestSupport.DrainAsync(reopened, "t")).Select(m => m.Text).ToList();
        Assert.That(drained, Is.EqualTo(acknowledged), "every acknowledged message, in order; not the one ACKed while the disk was full, and none of the refused ones");
    }
}

/// <summary>Disk use on a real FasterLog under a steady publish and ACK load, with 256 KiB segments.</summary>
[CancelAfter(120_000)]
public sealed class DurableSpaceTests
{
    [Test]
    public async Task SteadyPublishAndAck_WithAMessageHeldThroughout_KeepsTheDataDirectoryBounded_AndRecovers()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        options.BodyCacheBytes = 0;
        var payload = new string('p', 200);
        long written;
        long diskAtEnd;
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            var store = (FasterLogStore)queue.Store;
            await queue.PublishAsync("pinned", "held the whole time");
            var holder = queue.Subscribe("pinned");
            Assert.That(await holder.ReceiveTextAsync(), Is.EqualTo("held the whole time"));

            // Publishes arrive 200 at a time, so they share commits as concurrent publishers do; one at a time, the run
            // would cost 20,000 synchronous disk writes, which a slow disk turns into many minutes.
            await using var consumer = queue.Subscribe("steady");
            for (var round = 0; round < 100; round++)
            {
                await Task.WhenAll(Enumerable.Range(0, 200).Select(_ => queue.PublishAsync("steady", payload).AsTask()));
                for (var i = 0; i < 200; i++)
                {
                    await consumer.ReceiveTextAsync();
                    await consumer.AckAsync();
                }
            }

            written = store.TailAddress;

            // Compaction runs in the background as segments fill; the last truncation frees files at the next commit.
            await queue.CompactAsync();
            await queue.PublishAsync("steady", "a last message, committed after the truncation");
            var bounded = await DurableTestSupport.EventuallyAsync(() => directory.DiskBytes() < 6 * options.LogSegmentBytes!.Value);
            diskAtEnd = directory.DiskBytes();
            Assert.That(bounded, Is.True, $"{diskAtEnd} bytes on disk after writing {written} bytes of log");
            Assert.That(written, Is.GreaterThan(20 * options.LogSegmentBytes!.Value), "the load wrote far more than what stays on disk");
        }

        await using var reopened = await DurableTestSupport.OpenAsync(options);
        Assert.That(reopened.RecoveredRecords, Is.LessThan(5_000), "recovery reads the live tail, not the 60,000 records ever written");
        Assert.That((await DurableTestSupport.DrainAsync(reopened, "pinned")).Select(m => m.Text), Is.EqualTo(new[] { "held the whole time" }));
        Assert.That((await DurableTestSupport.DrainAsync(reopened, "steady")).Select(m => m.Text),
            Is.EqualTo(new[] { "a last message, committed after the truncation" }));
    }
}

/// <summary>
/// Many publishers and consumers on a real FasterLog whose write buffer is only four 64 KiB pages, with every body read
/// back from the log while compaction copies bodies forward.
/// </summary>
[CancelAfter(120_000)]
public sealed class DurableLoadTests
{
    [Test]
    public async Task ManyPublishersAndConsumers_OnASmallWriteBuffer_FinishWithNothingLostOrDuplicated()
    {
        // A small buffer keeps it full and compaction busy: bodies move while consumers read them.
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        options.BodyCacheBytes = 0;
        const int Publishers = 16;
        const int PerPublisher = 1_500;
        var acked = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        await using var queue = await DurableTestSupport.OpenAsync(options);
        using var done = new CancellationTokenSource();
        var body = new string('b', 700);

        var consumers = Enumerable.Range(0, 16).Select(_ => Task.Run(async () =>
        {
            await using var consumer = queue.Subscribe("load");
            try
            {
                while (true)
                {
                    var delivery = await consumer.ReceiveAsync(done.Token);
                    await consumer.AckAsync();
                    if (acked.AddOrUpdate(delivery.Text(), 1, (_, n) => n + 1) == 1 && acked.Count == Publishers * PerPublisher)
                    {
                        await done.CancelAsync();
                    }
                }
            }
            catch (OperationCanceledException) when (done.IsCancellationRequested)
            {
            }
        })).ToArray();
        var publishers = Enumerable.Range(0, Publishers).Select(p => Task.Run(async () =>
        {
            for (var i = 0; i < PerPublisher; i++)
            {
                await queue.PublishAsync("load", $"{p}:{i}:{body}");
            }
        })).ToArray();

        await Task.WhenAll(publishers).WaitAsync(TimeSpan.FromSeconds(90));
        await Task.WhenAll(consumers).WaitAsync(TimeSpan.FromSeconds(90));

        Assert.That(acked, Has.Count.EqualTo(Publishers * PerPublisher));
        Assert.That(acked.Values.Where(n => n != 1), Is.Empty);
    }

    [Test]
    public async Task TryReceive_NeverWaitsForADiskRead_ItReadsAheadForALaterCall()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        options.BodyCacheBytes = 0;
        await using (var writer = await MiniQueueEngine.OpenAsync(options))
        {
            foreach (var text in new[] { "m1", "m2" })
            {
                await writer.PublishAsync("t", text);
            }
        }

        // Reopened: every body is on disk only.
        await using var queue = await MiniQueueEngine.OpenAsync(options);
        await using var consumer = queue.Subscribe("t");
        foreach (var expected in new[] { "m1", "m2" })
        {
            if (expected == "m1")
            {
                // m2's body is read with m1's (BodyReadAhead), so only the first call must find nothing at hand.
                Assert.That(consumer.TryReceive(out _), Is.False, "the body must be read first: nothing is held meanwhile");
                Assert.That(queue.GetStats("t").Held, Is.Zero);
            }

            Delivery delivery = default;
            Assert.That(await DurableTestSupport.EventuallyAsync(() => consumer.TryReceive(out delivery)), Is.True, "a later call finds the body read ahead");
            Assert.That((delivery.Text(), queue.GetStats("t").Held), Is.EqualTo((expected, 1)));
            await consumer.AckAsync();
        }

        Assert.That(consumer.TryReceive(out _), Is.False);
    }
}
