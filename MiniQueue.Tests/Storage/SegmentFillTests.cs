using MiniQueue.Storage;

namespace MiniQueue.Tests.Storage;

/// <summary>
/// Log segments filled with zeros ahead of the log (<see cref="SegmentFill"/>), on a real FasterLog in a temp folder:
/// the log writes over them and recovers every message; a fill the log catches up with stops where it is; no fill
/// while the disk has no room for it beyond the reserve.
/// </summary>
[CancelAfter(60_000)]
[NonParallelizable]
public sealed class SegmentFillTests
{
    [TearDown]
    public void ClearHook() => SegmentFill.ChunkWritten = null;

    [Test]
    public async Task TheNextSegmentIsFilledAhead_AndTheLogWritesOverIt_AndRecoversEveryMessage()
    {
        using var directory = new TempDirectory();
        var options = DurableTestSupport.SmallLog(directory.Path);
        var first = Path.Combine(directory.Path, "wal.log.0");
        var second = Path.Combine(directory.Path, "wal.log.1");
        var files = new FolderFlushes();
        await using (var queue = await DurableTestSupport.OpenAsync(options, files: files))
        {
            var flushedAtOpen = files.Flushed(directory.Path);

            // A new log's first segment is filled at open, before anything is written to it.
            Assert.That(await DurableTestSupport.EventuallyAsync(() => new FileInfo(first).Length == 256 * 1024), Is.True, "the first segment is filled at open");
            Assert.That(File.ReadAllBytes(first).All(static b => b == 0), Is.True, "with zeros");

            // About 200 records of 1 KiB: most of the first 256 KiB segment, none in the second.
            for (var i = 0; i < 200; i++)
            {
                await queue.PublishAsync("t", Body(i));
            }

            Assert.That(
                await DurableTestSupport.EventuallyAsync(() => new FileInfo(second) is { Exists: true, Length: 256 * 1024 }), Is.True,
                "the second segment is filled to its full size before the log reaches it");
            Assert.That(File.ReadAllBytes(second).All(static b => b == 0), Is.True, "with zeros");
            Assert.That(
                await DurableTestSupport.EventuallyAsync(() => files.Flushed(directory.Path) > flushedAtOpen), Is.True, "and its name is flushed with its folder");

            for (var i = 200; i < 1200; i++)
            {
                await queue.PublishAsync("t", Body(i));
            }

            Assert.That(directory.LogFiles(), Has.Length.GreaterThanOrEqualTo(5), "the log went on through several filled segments");
        }

        await using var reopened = await DurableTestSupport.OpenAsync(DurableTestSupport.SmallLog(directory.Path));
        var drained = await DurableTestSupport.DrainAsync(reopened, "t");
        Assert.That(drained.Select(static message => message.Text), Is.EqualTo(Enumerable.Range(0, 1200).Select(Body)));
    }

    [Test]
    public async Task AFillTheLogCatchesUpWith_StopsWhereItIs_AndTheLogWritesOverItsZeros()
    {
        using var directory = new TempDirectory();
        SegmentFill? held = null;
        SegmentFill.ChunkWritten = fill =>
        {
            if (fill.Path == Path.Combine(directory.Path, "wal.log.1") && Interlocked.CompareExchange(ref held, fill, null) is null)
            {
                // The fill of the second segment stays after its first chunk until the log's writer stops it.
                SpinWait.SpinUntil(() => fill.Stopping, TestSupport.Bound);
            }
        };

        await using (var queue = await DurableTestSupport.OpenAsync(DurableTestSupport.SmallLog(directory.Path)))
        {
            // About 400 records of 1 KiB: past the first segment, into the second.
            for (var i = 0; i < 400; i++)
            {
                await queue.PublishAsync("t", Body(i));
            }

            Assert.That(held, Is.Not.Null, "a fill started");
            using (Assert.EnterMultipleScope())
            {
                Assert.That(held!.Stopping, Is.True, "the log's writer stopped it when it reached the segment");
                Assert.That(held.Written, Is.EqualTo(64 * 1024), "after the one chunk it had written");
                Assert.That(held.Completed, Is.False);
            }
        }

        await using var reopened = await DurableTestSupport.OpenAsync(DurableTestSupport.SmallLog(directory.Path));
        var drained = await DurableTestSupport.DrainAsync(reopened, "t");
        Assert.That(drained.Select(static message => message.Text), Is.EqualTo(Enumerable.Range(0, 400).Select(Body)));
    }

    [TestCase(768 * 1024, true, false, TestName = "NoFill_WhenTheCapLeavesTooLittleBeyondTheReserve")]
    [TestCase(8 * 1024 * 1024, true, true, TestName = "AFill_WhenTheCapLeavesRoom")]
    [TestCase(8 * 1024 * 1024, false, false, TestName = "NoFill_WhenTurnedOff")]
    public async Task SegmentsAreFilledAhead_OnlyWithRoomForThemBeyondTheReserve(long maxDiskBytes, bool fillAhead, bool filled)
    {
        using var directory = new TempDirectory();
        var fills = 0;
        SegmentFill.ChunkWritten = fill =>
        {
            if (fill.Path.StartsWith(directory.Path, StringComparison.Ordinal))
            {
                Interlocked.Increment(ref fills);
            }
        };
        var options = DurableTestSupport.SmallLog(directory.Path);
        options.MaxDiskBytes = maxDiskBytes;
        options.FillLogSegmentsAhead = fillAhead;
        await using var queue = await DurableTestSupport.OpenAsync(options);

        // About 300 records of 1 KiB, into the second segment: the log's writer has waited for any fill of it by then.
        // Under the small cap the room (768 KiB less what the directory holds) stays above the 256 KiB reserve, so
        // publishes go on, but under the reserve and two segments more, so nothing is filled ahead.
        for (var i = 0; i < 300; i++)
        {
            await queue.PublishAsync("t", Body(i));
        }

        Assert.That(queue.GetStats("t").Ready, Is.EqualTo(300));
        Assert.That(fills, filled ? Is.GreaterThan(0) : Is.Zero);
    }

    [Test]
    public async Task AFillOnlyExtendsTheFile_WhatItHoldsStays()
    {
        using var directory = new TempDirectory();
        await (await DurableTestSupport.OpenAsync(DurableTestSupport.SmallLog(directory.Path))).DisposeAsync();

        // What a crash can leave past the log's end: a next segment that the log had begun to write.
        var second = Path.Combine(directory.Path, "wal.log.1");
        var garbage = Enumerable.Repeat((byte)0xFF, 4096).ToArray();
        await File.WriteAllBytesAsync(second, garbage);
        await using (var queue = await DurableTestSupport.OpenAsync(DurableTestSupport.SmallLog(directory.Path)))
        {
            for (var i = 0; i < 200; i++)
            {
                await queue.PublishAsync("t", Body(i));
            }

            Assert.That(await DurableTestSupport.EventuallyAsync(() => new FileInfo(second).Length == 256 * 1024), Is.True, "the second segment is filled");
            var contents = File.ReadAllBytes(second);
            using (Assert.EnterMultipleScope())
            {
                Assert.That(contents[..4096], Is.EqualTo(garbage), "what the file held stays");
                Assert.That(contents[4096..].All(static b => b == 0), Is.True, "zeros after it");
            }

            for (var i = 200; i < 400; i++)
            {
                await queue.PublishAsync("t", Body(i));
            }
        }

        await using var reopened = await DurableTestSupport.OpenAsync(DurableTestSupport.SmallLog(directory.Path));
        var drained = await DurableTestSupport.DrainAsync(reopened, "t");
        Assert.That(drained.Select(static message => message.Text), Is.EqualTo(Enumerable.Range(0, 400).Select(Body)));
    }

    /// <summary>Counts the folders flushed, by path.</summary>
    private sealed class FolderFlushes : DataFiles
    {
        private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _flushes = new();

        public int Flushed(string directory) => _flushes.GetValueOrDefault(directory);

        public override void FlushDirectory(string directory)
        {
            base.FlushDirectory(directory);
            _flushes.AddOrUpdate(directory, 1, static (_, count) => count + 1);
        }
    }

    /// <summary>A 1 KiB body that says which message it is.</summary>
    private static string Body(int i) => i.ToString("D6", System.Globalization.CultureInfo.InvariantCulture) + new string('x', 1018);
}
