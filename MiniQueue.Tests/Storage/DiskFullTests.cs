using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using MiniQueue.Storage;

namespace MiniQueue.Tests.Storage;

/// <summary>
/// The durable engine on a real, small tmpfs that fills up for real (ENOSPC from the kernel): filled by another program,
/// by its own publishes with no reserve, and short of space with a queue smaller than one log segment.
/// </summary>
[CancelAfter(120_000)]
public sealed class DiskFullTests
{
    [Test]
    public async Task AnotherProgramFillsTheDisk_PublishesFail_ConsumersDrain_AndTheEngineComesBackByItselfWhenSpaceReturns()
    {
        using var filesystem = SmallFilesystem.Mount(FilesystemKind.Tmpfs, 16);
        var options = DurableTestSupport.SmallLog(Path.Combine(filesystem.MountPoint, "data"));
        int extra;
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            await using var consumer = queue.Subscribe("t");
            (var filler, extra) = await FillTheDiskBetweenAcksAsync(filesystem, queue, consumer);
            File.Delete(filler);
            Assert.That(await DurableTestSupport.PublishEventuallyAsync(queue, "t", "after"), Is.True, "publishes are taken again once the space is back");
            Assert.That(queue.IsWritable, Is.True);
        }

        await using var reopened = await DurableTestSupport.OpenAsync(options);
        Assert.That(
            (await DurableTestSupport.DrainAsync(reopened, "t")).Select(m => m.Text),
            Is.EqualTo(Enumerable.Range(20, 20 + extra).Select(i => $"m{i}").Append("after")));
    }

    [Test]
    public async Task StoppingTheEngineTheMomentItsStoreRecovers_KeepsTheAcksMadeWhileTheStoreWasFailed()
    {
        using var filesystem = SmallFilesystem.Mount(FilesystemKind.Tmpfs, 16);
        var options = DurableTestSupport.SmallLog(Path.Combine(filesystem.MountPoint, "data"));

        // The log must meet the full disk in its writes (a segment filled ahead would hold them in blocks it has).
        options.FillLogSegmentsAhead = false;
        int extra;
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            // The ACKs made on the full disk live only in memory until the store has recovered and checkpointed the topic.
            string filler;
            await using (var consumer = queue.Subscribe("t"))
            {
                (filler, extra) = await FillTheDiskBetweenAcksAsync(filesystem, queue, consumer);
            }

            File.Delete(filler);

            // Stop at once when the store takes records again: its recovery checkpoint may not be written yet, and the
            // engine must not stop before it is.
            var waited = Stopwatch.StartNew();
            while (!queue.IsWritable)
            {
                Assert.That(waited.Elapsed, Is.LessThan(TimeSpan.FromSeconds(60)), "the store never recovered");
                await Task.Yield();
            }
        }

        await using var reopened = await DurableTestSupport.OpenAsync(options);
        Assert.That(
            (await DurableTestSupport.DrainAsync(reopened, "t")).Select(m => m.Text),
            Is.EqualTo(Enumerable.Range(20, 20 + extra).Select(i => $"m{i}")));
    }

    [Test]
    public async Task ARestartWhileTheDiskIsFull_Opens_AndNothingAcknowledgedIsLost()
    {
        using var filesystem = SmallFilesystem.Mount(FilesystemKind.Tmpfs, 16);
        var options = DurableTestSupport.SmallLog(Path.Combine(filesystem.MountPoint, "data"));
        string filler;
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            await PublishAsync(queue, 40);
            await using var consumer = queue.Subscribe("t");
            await AckAsync(consumer, 2);
            await queue.PublishAsync("t", "committed before the disk filled");
            filler = filesystem.Fill();
            await AckAsync(consumer, 8);
        }

        // Opening needs no new space: the log, its metadata and the watermark are read, not written.
        await using (var whileFull = await DurableTestSupport.OpenAsync(options))
        {
            var stats = whileFull.GetStats("t");
            Assert.That(stats.Ready, Is.InRange(31, 39), "ACKs made after the disk filled may come back (at least once); none of the rest is lost");
            File.Delete(filler);
            Assert.That(await DurableTestSupport.PublishEventuallyAsync(whileFull, "t", "after"), Is.True);
        }

        await using var reopened = await DurableTestSupport.OpenAsync(options);
        var drained = (await DurableTestSupport.DrainAsync(reopened, "t")).Select(m => m.Text).ToList();
        var expectedTail = Enumerable.Range(10, 30).Select(i => $"m{i}").Append("committed before the disk filled").Append("after");
        Assert.That(drained, Is.SupersetOf(expectedTail));
        Assert.That(drained, Has.None.EqualTo("m0").And.None.EqualTo("m1"), "ACKed while there was room: gone for good");
        Assert.That(drained.Where(text => expectedTail.Contains(text)), Is.EqualTo(expectedTail), "in order");
    }

    [Test]
    public async Task WithoutAReserve_ItsOwnPublishesFillTheDisk_NothingAcknowledgedIsLost_AndItComesBackWhenSpaceIsFreed()
    {
        using var filesystem = SmallFilesystem.Mount(FilesystemKind.Tmpfs, 8);
        var ballast = Path.Combine(filesystem.MountPoint, "ballast");
        await File.WriteAllBytesAsync(ballast, new byte[1024 * 1024]);
        var options = DurableTestSupport.SmallLog(Path.Combine(filesystem.MountPoint, "data"));
        options.DiskReserveBytes = 0;
        var acknowledged = new List<string>();
        var refused = new List<string>();
        var refusals = new List<MiniQueueStoreException>();
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            var next = 0;
            async Task PublisherAsync()
            {
                while (true)
                {
                    var text = $"p{Interlocked.Increment(ref next):D5}" + new string('x', 1000);
                    try
                    {
                        await queue.PublishAsync("t", text);
                        lock (acknowledged)
                        {
                            acknowledged.Add(text);
                        }
                    }
                    catch (MiniQueueStoreException exception)
                    {
                        lock (acknowledged)
                        {
                            refused.Add(text);
                            refusals.Add(exception);
                        }

                        return;
                    }
                }
            }

            await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(PublisherAsync)));
            Assert.That(filesystem.AvailableBytes, Is.LessThan(64 * 1024), "the log filled the disk");

            // Every publisher ended on a refusal that says the disk is full: the space check found its record would not
            // fit, or a write failed for lack of space (the store then reopens its log as soon as it can, so whether it
            // refuses right now is not fixed).
            Assert.That(
                refusals.Select(exception => exception.Message),
                Has.All.Contains("the disk of the durable store is full").Or.Contains("failed: the disk is full"));

            // Something else frees space: the store comes back by itself.
            File.Delete(ballast);
            Assert.That(await DurableTestSupport.PublishEventuallyAsync(queue, "t", "after"), Is.True);
            acknowledged.Add("after");
            Assert.That(queue.GetStats("t").Ready, Is.EqualTo(acknowledged.Count));
        }

        // What is on the disk, read where draining has room (with no reserve, the full tmpfs has none for the ACKs).
        using var copy = new TempDirectory();
        foreach (var file in Directory.EnumerateFiles(options.DataDirectory!, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(copy.Path, Path.GetRelativePath(options.DataDirectory!, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }

        await using var reopened = await DurableTestSupport.OpenAsync(DurableTestSupport.SmallLog(copy.Path));
        var drained = (await DurableTestSupport.DrainAsync(reopened, "t")).Select(m => m.Text).ToList();
        var lost = acknowledged.Except(drained).Select(text => text[..Math.Min(6, text.Length)]).ToList();
        var unexpected = drained.Except(acknowledged).Select(text => text[..Math.Min(6, text.Length)]).ToList();
        Assert.That(lost, Is.Empty, "every acknowledged message is there");
        Assert.That(unexpected, Is.Empty, $"no refused one (refused: {string.Join(", ", refused.Select(text => text[..Math.Min(6, text.Length)]))})");
        Assert.That(drained, Has.Count.EqualTo(acknowledged.Count), "each once");
        Assert.That(refused, Is.Not.Empty);
    }

    [Test]
    public async Task AQueueSmallerThanASegment_ThatFillsTheDisk_GetsItsSpaceBack_WhenConsumersDrainIt()
    {
        // 4 MiB of disk, 8 MiB segments: every message lives in the first segment, which cannot be deleted while the log
        // writes into it. Short of space the log gives back the pages below its start, so draining frees room anyway.
        using var filesystem = SmallFilesystem.Mount(FilesystemKind.Tmpfs, 4);
        var options = DurableTestSupport.SmallLog(Path.Combine(filesystem.MountPoint, "data"));
        options.LogSegmentBytes = 8 * 1024 * 1024;
        options.DiskReserveBytes = 512 * 1024;
        await using var queue = await DurableTestSupport.OpenAsync(options);
        var published = 0;
        while (true)
        {
            try
            {
                await queue.PublishAsync("t", new string('f', 16 * 1024));
                published++;
            }
            catch (MiniQueueStoreException)
            {
                break;
            }

            Assert.That(published, Is.LessThan(1000), "publishes were never refused");
        }

        Assert.That(queue.IsDiskLow, Is.True);
        Assert.That(queue.IsWritable, Is.True, "refused by the reserve, before the disk ran out: no write failed");
        var availableWhenFull = filesystem.AvailableBytes;

        Assert.That((await DurableTestSupport.DrainAsync(queue, "t")).Count, Is.EqualTo(published));
        Assert.That(await DurableTestSupport.PublishEventuallyAsync(queue, "t", "after"), Is.True, "publishes are taken again");
        Assert.That(queue.IsDiskLow, Is.False);
        Assert.That(filesystem.AvailableBytes, Is.GreaterThan(Math.Max(availableWhenFull, options.DiskReserveBytes.Value)), "the drained pages were given back");
        Assert.That(Directory.GetFiles(options.DataDirectory!, "wal.log.*"), Has.Length.EqualTo(1), "all of it inside one segment file");
    }

    private static async Task PublishAsync(MiniQueueEngine queue, int count)
    {
        for (var i = 0; i < count; i++)
        {
            await queue.PublishAsync("t", $"m{i}");
        }
    }

    /// <summary>
    /// Publishes m0..m39 and ACKs two, fills the disk (the filler file is returned, to delete), publishes m40, m41, ...
    /// until the store refuses one (how many it took is returned), then ACKs 18 more on the full disk.
    /// </summary>
    private static async Task<(string Filler, int Extra)> FillTheDiskBetweenAcksAsync(SmallFilesystem filesystem, MiniQueueEngine queue, MiniQueueConsumer consumer)
    {
        await PublishAsync(queue, 40);
        await AckAsync(consumer, 2);
        var filler = filesystem.Fill();
        Assert.That(filesystem.AvailableBytes, Is.LessThan(4096));

        // A publish or two may still fit in the log's last allocated block (thousands, in a segment filled ahead); then
        // they are refused.
        var extra = await PublishUntilRefusedAsync(queue);

        // Consumers go on with nothing left on the disk: their ACKs cannot be written now, yet they must hold.
        await AckAsync(consumer, 18);
        return (filler, extra);
    }

    /// <summary>Publishes m40, m41, ... until the store refuses one; how many it took.</summary>
    private static async Task<int> PublishUntilRefusedAsync(MiniQueueEngine queue)
    {
        var taken = 0;
        while (true)
        {
            try
            {
                await queue.PublishAsync("t", $"m{40 + taken}");
                taken++;

                // The segment filled ahead takes a few thousand small records in blocks it has, until the store's
                // measure of the room (at least every second) or the disk refuses one.
                Assert.That(taken, Is.LessThan(100_000), "publishes were never refused");
            }
            catch (MiniQueueStoreException)
            {
                return taken;
            }
        }
    }

    private static async Task AckAsync(MiniQueueConsumer consumer, int count)
    {
        for (var i = 0; i < count; i++)
        {
            await consumer.ReceiveTextAsync();
            await consumer.AckAsync();
        }
    }
}

/// <summary>The reserve's arithmetic, with the filesystem's answer under the test's control.</summary>
public sealed class DiskSpaceTests
{
    private const long MiB = 1024 * 1024;

    [Test]
    public void Publishes_AreRefusedUnderTheReserve_CountingWhatTheLogAppendedSinceItWasMeasured()
    {
        var available = 100 * MiB;
        long tail = 0;
        long written = 0;
        var logger = new Microsoft.Extensions.Logging.Testing.FakeLogger();
        var space = new DiskSpace("/data", reserveBytes: 32 * MiB, maxBytes: null, () => tail, () => written, logger, _ => available);

        Assert.That(space.Refuses(MiB), Is.False);

        // 60 MiB appended, none of it on the disk yet: the disk still says 100 MiB, but the estimate knows better.
        tail = 60 * MiB;
        Assert.That(space.Refuses(10 * MiB), Is.True, "40 MiB left, minus the message, is under the 32 MiB reserve");
        Assert.That(space.IsLow, Is.True);
        Assert.That(logger.Collector.GetSnapshot().Single().Level, Is.EqualTo(Microsoft.Extensions.Logging.LogLevel.Warning));
        Assert.That(logger.Collector.LatestRecord.Message, Does.Contain("Publishes are refused"));
    }

    [Test]
    public void RoomAhead_IsTheReserveAndTwiceWhatIsTaken_CountingWhatTheLogAppended()
    {
        var available = 40 * MiB;
        long tail = 0;
        var space = new DiskSpace("/data", reserveBytes: 32 * MiB, maxBytes: null, () => tail, () => 0, NullLogger.Instance, _ => available);

        Assert.That(space.HasRoomAhead(4 * MiB), Is.True, "40 MiB leaves the 32 MiB reserve and 4 MiB twice");
        Assert.That(space.HasRoomAhead((4 * MiB) + 1), Is.False);

        // Appended but not yet written: already counted as taken.
        tail = MiB;
        Assert.That(space.HasRoomAhead(4 * MiB), Is.False);
        Assert.That(space.Refuses(MiB), Is.False, "publishes still fit: room ahead is asked for with a margin");
    }

    [Test]
    public void Refusals_EndOnlyWithRoomAboveTheReserve_ByASixteenthOfIt_AndTheEndIsLoggedOnce()
    {
        var available = 30 * MiB;
        var logger = new Microsoft.Extensions.Logging.Testing.FakeLogger();
        var space = new DiskSpace("/data", reserveBytes: 32 * MiB, maxBytes: null, () => 0, () => 0, logger, _ => available);
        Assert.That(space.Refuses(0), Is.True);

        available = 33 * MiB;
        Thread.Sleep(15);
        Assert.That(space.Refuses(0), Is.True, "33 MiB is above the reserve but not by 2 MiB");

        available = 40 * MiB;
        Thread.Sleep(15);
        Assert.That(space.Refuses(0), Is.False);
        Assert.That(space.Refuses(0), Is.False);
        Assert.That(logger.Collector.GetSnapshot().Select(record => record.Message[..20]), Is.EqualTo(new[] { "Publishes are refuse", "Publishes are taken " }));
    }

    [Test]
    public void WithNoReserve_APublishIsRefusedWhenItsRecordDoesNotFit_AndRefusalsLastUntilTheMarginIsFree()
    {
        var available = 4 * 1024L;
        var logger = new Microsoft.Extensions.Logging.Testing.FakeLogger();
        var space = new DiskSpace("/data", reserveBytes: 0, maxBytes: null, () => 0, () => 0, logger, _ => available);

        Assert.That(space.Refuses(1024), Is.False, "1 KiB fits in 4 KiB");
        Assert.That(space.Refuses(8 * 1024), Is.True, "8 KiB does not");
        Assert.That(space.IsLow, Is.True);

        // The maintenance loop looks again with no message in hand: a few free bytes must not end the refusals (the
        // health check, the disk_low gauge and the log would otherwise flap with every refused publish).
        Thread.Sleep(15);
        Assert.That(space.Refresh(0), Is.True);
        Assert.That(space.Refuses(1024), Is.True, "refusing until the margin is free, even for a message that fits");

        available = DiskSpace.MinimumMarginBytes;
        Thread.Sleep(15);
        Assert.That(space.Refresh(0), Is.False);
        Assert.That(space.IsLow, Is.False);
        Assert.That(logger.Collector.GetSnapshot().Select(record => record.Message[..20]), Is.EqualTo(new[] { "Publishes are refuse", "Publishes are taken " }));
    }

    [Test]
    public void ASizeCap_LimitsTheRoom_ToWhatTheDataDirectoryMayStillTake()
    {
        using var directory = new TempDirectory();
        File.WriteAllBytes(Path.Combine(directory.Path, "data"), new byte[3 * MiB]);
        var space = new DiskSpace(directory.Path, reserveBytes: 2 * MiB, maxBytes: 6 * MiB, () => 0, () => 0, new Microsoft.Extensions.Logging.Testing.FakeLogger(), _ => 1000 * MiB);

        Assert.That(space.AvailableBytes(), Is.EqualTo(3 * MiB), "a 6 MiB cap with 3 MiB used");
        Assert.That(space.Refuses(512 * 1024), Is.False);
        Assert.That(space.Refuses(2 * MiB), Is.True);
    }

    [Test]
    public void Maintenance_MaySpendTheReserve_ButNotItsLastQuarter()
    {
        var space = new DiskSpace("/data", reserveBytes: 32 * MiB, maxBytes: null, () => 0, () => 0, new Microsoft.Extensions.Logging.Testing.FakeLogger(), _ => 20 * MiB);

        Assert.That(space.CanSpend(10 * MiB), Is.True);
        Assert.That(space.CanSpend(13 * MiB), Is.False);
    }
}
