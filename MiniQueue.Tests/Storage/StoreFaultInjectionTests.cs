using MiniQueue.Storage;

namespace MiniQueue.Tests.Storage;

/// <summary>
/// Faults injected below FasterLog, on every file the store writes: the log's segments (a device that fails with EIO,
/// or tears a write in half) and its commit metadata and watermark (writes that fail, files left half written).
/// </summary>
[CancelAfter(120_000)]
public sealed class StoreFaultInjectionTests
{
    [Test]
    public async Task LogWritesFailingWithEio_ForAWhile_LoseNothingAcknowledged_AndTheEngineComesBackByItself()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        var disk = new SimulatedDisk();
        await using (var queue = await DurableTestSupport.OpenAsync(options, path => new FaultInjectingDevice(path, disk)))
        {
            for (var i = 0; i < 10; i++)
            {
                await queue.PublishAsync("t", $"m{i}");
            }

            await using var consumer = queue.Subscribe("t");
            Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("m0"));
            await consumer.AckAsync();

            disk.Failing = true;
            Assert.ThrowsAsync<MiniQueueStoreException>(async () => await queue.PublishAsync("t", "refused"));
            Assert.That(await DurableTestSupport.EventuallyAsync(() => !queue.IsWritable), Is.True, "the store says it is not taking records");

            // Consumers go on while the device fails; what they do must reach the log once it works again.
            Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("m1"));
            await consumer.AckAsync();
            Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("m2"));
            await consumer.NackAsync();

            disk.Failing = false;
            Assert.That(await DurableTestSupport.PublishEventuallyAsync(queue, "t", "after"), Is.True, "publishes are taken again, without a restart");
            Assert.That(queue.IsWritable, Is.True);
        }

        await using var reopened = await DurableTestSupport.OpenAsync(options);
        Assert.That(
            (await DurableTestSupport.DrainAsync(reopened, "t")).Select(m => m.Text),
            Is.EqualTo(new[] { "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9", "after" }),
            "the ACKs and the NACK made while the device failed were kept; the refused publish is not there");
    }

    [Test]
    public async Task ATornLogWrite_FailsThePublish_AndARestartFindsExactlyWhatWasAcknowledged()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        var disk = new SimulatedDisk();
        var acknowledged = new List<string>();
        await using (var queue = await DurableTestSupport.OpenAsync(options, path => new FaultInjectingDevice(path, disk)))
        {
            for (var i = 0; i < 20; i++)
            {
                await queue.PublishAsync("t", new string('x', 500) + i);
                acknowledged.Add(new string('x', 500) + i);
            }

            disk.TearNextWrites(1);
            Assert.ThrowsAsync<MiniQueueStoreException>(async () => await queue.PublishAsync("t", "torn"));
            Assert.That(disk.FailedWrites, Is.EqualTo(1));
        }

        // The engine was closed while its log was faulted (or just after it came back): a restart still opens it.
        await using var reopened = await DurableTestSupport.OpenAsync(options);
        Assert.That((await DurableTestSupport.DrainAsync(reopened, "t")).Select(m => m.Text), Is.EqualTo(acknowledged));
    }

    [Test]
    public async Task CommitMetadataThatCannotBeWritten_WhileTheLogIsTruncated_NeverCostsTheLog()
    {
        // The fault behind "the log recovers only up to address 64": FASTER's own commit manager ignored a failed metadata
        // write, deleted the last good file and let the log delete the segments it had truncated; a restart then found
        // neither and started an empty log. Here metadata writes fail while compaction truncates the log, then the
        // engine restarts with them still failing.
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        var files = new FaultInjectingFiles();
        await using (var queue = await DurableTestSupport.OpenAsync(options, files: files))
        {
            await PublishKeptAsync(queue);
            files.Failing = true;
            await ChurnAsync(queue, rounds: 20);
            await queue.CompactAsync();
            await queue.PublishAsync("steady", "commit the truncation");
            var store = (FasterLogStore)queue.Store;

            Assert.That(store.BeginAddress, Is.GreaterThan(options.LogSegmentBytes!.Value), "compaction moved the log's start past whole segments");
            Assert.That(files.FailedWrites, Is.Positive, "metadata writes were attempted and failed");
            Assert.That(store.HeldSegments, Is.Positive, "the segments wait for durable metadata instead of being deleted");
            Assert.That(directory.LogFiles(), Does.Contain("wal.log.0"));
        }

        await using (var reopened = await DurableTestSupport.OpenAsync(options, files: files))
        {
            Assert.That(reopened.GetStats("kept").Ready, Is.EqualTo(5), "everything is still there after a restart");
            Assert.That(reopened.GetStats("steady").Ready, Is.EqualTo(1));

            // Once metadata can be written again, the segments the log let go of are deleted (but for those the spare
            // commit file, one truncation older, still starts in).
            files.Failing = false;
            await ChurnAsync(reopened, rounds: 20);
            await reopened.CompactAsync();
            await reopened.PublishAsync("steady", "commit the truncation again");
            var store = (FasterLogStore)reopened.Store;
            Assert.That(await DurableTestSupport.EventuallyAsync(() => store.HeldSegments <= 1 && !directory.LogFiles().Contains("wal.log.0")), Is.True,
                $"held segments: {store.HeldSegments}; files: {string.Join(", ", directory.LogFiles())}");
        }

        await using var last = await DurableTestSupport.OpenAsync(options);
        Assert.That((await DurableTestSupport.DrainAsync(last, "kept")).Select(m => m.Text), Is.EqualTo(Enumerable.Range(0, 5).Select(i => $"kept{i}")));
    }

    [TestCase("torn")]
    [TestCase("zeroed")]
    [TestCase("empty")]
    public async Task ADamagedNewestCommitMetadataFile_IsSkipped_AndTheStoreOpensAtTheLastWholeOne(string damage)
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            await PublishKeptAsync(queue);
            await ChurnAsync(queue, rounds: 20);
            await queue.CompactAsync();
            await queue.PublishAsync("steady", "last");
        }

        var commits = Directory.GetFiles(Path.Combine(directory.Path, CommitMetadataFiles.FolderName), "commit.*");
        Assert.That(commits, Has.Length.EqualTo(2), "the newest commit file and one spare");
        var newest = commits.OrderByDescending(path => long.Parse(Path.GetFileName(path)["commit.".Length..], System.Globalization.CultureInfo.InvariantCulture)).First();
        var bytes = await File.ReadAllBytesAsync(newest);
        await File.WriteAllBytesAsync(newest, damage switch
        {
            "torn" => bytes[..(bytes.Length / 2)],
            "zeroed" => new byte[bytes.Length],
            _ => [],
        });

        await using var reopened = await DurableTestSupport.OpenAsync(options);
        Assert.That((await DurableTestSupport.DrainAsync(reopened, "kept")).Select(m => m.Text), Is.EqualTo(Enumerable.Range(0, 5).Select(i => $"kept{i}")));
        Assert.That((await DurableTestSupport.DrainAsync(reopened, "steady")).Select(m => m.Text), Is.EqualTo(new[] { "last" }));
    }

    [Test]
    public async Task ACommitMetadataWriteTornInTheMiddle_LeavesThePreviousFileInForce()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        var files = new FaultInjectingFiles();
        await using (var queue = await DurableTestSupport.OpenAsync(options, files: files))
        {
            await PublishKeptAsync(queue);
            await ChurnAsync(queue, rounds: 10);
            await queue.CompactAsync();
            await queue.PublishAsync("steady", "first truncation committed");
            var writes = files.Writes;

            // The next truncation's metadata write stops halfway, as a crash in the middle of it would.
            files.TearNext = true;
            await ChurnAsync(queue, rounds: 10);
            await queue.CompactAsync();
            await queue.PublishAsync("steady", "second truncation committed");
            Assert.That(files.TearNext, Is.False, "a metadata write was torn");
            Assert.That(files.Writes, Is.GreaterThanOrEqualTo(writes));
        }

        Assert.That(Directory.GetFiles(Path.Combine(directory.Path, CommitMetadataFiles.FolderName), "*.tmp"), Is.Empty, "the torn temporary file was removed");
        await using var reopened = await DurableTestSupport.OpenAsync(options);
        Assert.That(reopened.GetStats("kept").Ready, Is.EqualTo(5));
        Assert.That((await DurableTestSupport.DrainAsync(reopened, "steady")).Select(m => m.Text), Is.EqualTo(new[] { "first truncation committed", "second truncation committed" }));
    }

    [Test]
    public async Task ATornWatermarkSlot_IsSkipped_ButBothSlotsDamaged_IsRefused()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            for (var i = 0; i < 50; i++)
            {
                await queue.PublishAsync("t", $"m{i}");
                await Task.Delay(i % 10 == 0 ? 110 : 0);   // the watermark is rewritten at most every 100 ms
            }
        }

        var path = Path.Combine(directory.Path, Watermark.FileName);
        Assert.That(new FileInfo(path).Length, Is.EqualTo(8192), "two 4 KiB slots");
        var original = await File.ReadAllBytesAsync(path);

        // A power loss in the middle of a slot write: that slot is garbage, the other still holds the previous bound.
        foreach (var slot in new[] { 0, 4096 })
        {
            var torn = original.ToArray();
            Random.Shared.NextBytes(torn.AsSpan(slot + 8, 20));
            await File.WriteAllBytesAsync(path, torn);
            await using var reopened = await DurableTestSupport.OpenAsync(options);
            Assert.That(reopened.GetStats("t").Ready, Is.EqualTo(50));
        }

        var bothTorn = (await File.ReadAllBytesAsync(path)).ToArray();
        Random.Shared.NextBytes(bothTorn.AsSpan(8, 20));
        Random.Shared.NextBytes(bothTorn.AsSpan(4096 + 8, 20));
        await File.WriteAllBytesAsync(path, bothTorn);
        var refused = Assert.ThrowsAsync<MiniQueueStoreException>(async () => await DurableTestSupport.OpenAsync(options));
        Assert.That(refused!.Message, Does.Contain("damaged in both of its slots"));
    }

    [Test]
    public async Task AWatermarkOfTheOlderFormat_IsRead_AndStillCatchesALogThatLostItsEnd()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        long committed;
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            await queue.PublishAsync("t", "kept");
            committed = ((FasterLogStore)queue.Store).CommittedUntilAddress;
        }

        // The 16-byte file of the previous version: the address and its complement, here claiming more than the log has.
        var path = Path.Combine(directory.Path, Watermark.FileName);
        var legacy = new byte[16];
        BitConverter.TryWriteBytes(legacy, committed + 4096);
        BitConverter.TryWriteBytes(legacy.AsSpan(8), ~(committed + 4096));
        await File.WriteAllBytesAsync(path, legacy);
        var refused = Assert.ThrowsAsync<MiniQueueStoreException>(async () => await DurableTestSupport.OpenAsync(options));
        Assert.That(refused!.Message, Does.Contain("damaged"));

        BitConverter.TryWriteBytes(legacy, committed);
        BitConverter.TryWriteBytes(legacy.AsSpan(8), ~committed);
        await File.WriteAllBytesAsync(path, legacy);
        await using var reopened = await DurableTestSupport.OpenAsync(options);
        Assert.That(reopened.GetStats("t").Ready, Is.EqualTo(1));
        Assert.That(new FileInfo(path).Length, Is.EqualTo(8192), "rewritten in the new format");
    }

    [Test]
    public async Task AMissingSegmentInsideTheCommittedLog_IsRefusedAsDamage()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            await PublishKeptAsync(queue);
            for (var i = 0; i < 100; i++)
            {
                await queue.PublishAsync("big", new string('b', 8 * 1024));
            }
        }

        Assert.That(directory.LogFiles(), Does.Contain("wal.log.1"));
        File.Delete(Path.Combine(directory.Path, "wal.log.1"));

        // FasterLog would read zeros from the missing file and recover a shorter log: the watermark or the segment check
        // (whichever the recovery reaches) refuses it.
        var refused = Assert.ThrowsAsync<MiniQueueStoreException>(async () => await DurableTestSupport.OpenAsync(options));
        Assert.That(refused!.Message, Does.Contain("is damaged"));
    }

    private static async Task PublishKeptAsync(MiniQueueEngine queue)
    {
        for (var i = 0; i < 5; i++)
        {
            await queue.PublishAsync("kept", $"kept{i}");
        }
    }

    /// <summary>Publishes and ACKs 2 KiB messages, 50 at a time, so that segments fill and die.</summary>
    private static async Task ChurnAsync(MiniQueueEngine queue, int rounds)
    {
        await using var consumer = queue.Subscribe("churn");
        for (var round = 0; round < rounds; round++)
        {
            await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => queue.PublishAsync("churn", new string('c', 2048)).AsTask()));
            for (var i = 0; i < 50; i++)
            {
                await consumer.ReceiveTextAsync();
                await consumer.AckAsync();
            }
        }
    }
}
