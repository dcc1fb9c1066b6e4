using MiniQueue.Storage;

namespace MiniQueue.Tests.Storage;

/// <summary>
/// The log's segments are written past the page cache (<see cref="DirectWrites"/>) on a filesystem that takes direct
/// writes of the log's sectors, and through the page cache elsewhere; either way every message reads back whole, from the
/// running engine's log and after a reopen. Real filesystems: ext4 on 512-byte and on 4 KiB sectors (direct writes
/// only in 4 KiB units there), and tmpfs (it refuses direct I/O before Linux 6.6, and reports no alignment for it after).
/// </summary>
[CancelAfter(120_000)]
public sealed class DirectWritesTests
{
    private const int WriteOnly = 1;
    private const int AccessModes = 3;
    private const int Direct = 0x4000;
    private const int DataSync = 0x1000;

    [TestCase(FilesystemKind.Ext4, true)]
    [TestCase(FilesystemKind.Ext4On4KiBSectors, false)]
    [TestCase(FilesystemKind.Tmpfs, false)]
    public async Task TheLogIsWrittenPastThePageCache_WhereTheFilesystemTakesItsSectors_AndEveryMessageReadsBackWhole(FilesystemKind kind, bool direct)
    {
        using var filesystem = SmallFilesystem.Mount(kind, 64);
        var options = DurableTestSupport.SmallLog(Path.Combine(filesystem.MountPoint, "data"));
        options.BodyCacheBytes = 0;

        // Sizes that end anywhere in a sector, so that commits write partial sectors again and again.
        var texts = Enumerable.Range(0, 400).Select(i => $"m{i}-" + new string((char)('a' + (i % 26)), i * 37 % 5_000)).ToList();
        await using (var queue = await DurableTestSupport.OpenAsync(options))
        {
            foreach (var text in texts)
            {
                await queue.PublishAsync("t", text);
            }

            var handles = SegmentWriteHandles(options.DataDirectory!);
            Assert.That(handles, Is.Not.Empty, "the log's segments are open for writing");
            Assert.That(handles.Select(flags => (flags & Direct) != 0), Is.All.EqualTo(direct), "written past the page cache");
            Assert.That(handles.Select(flags => (flags & DataSync) != 0), Is.All.True, "every write on the disk when it returns");

            // Far more than the log keeps in memory: the first half comes back from the segment files.
            await using var consumer = queue.Subscribe("t");
            for (var i = 0; i < texts.Count / 2; i++)
            {
                Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo(texts[i]));
                await consumer.AckAsync();
            }
        }

        await using var reopened = await DurableTestSupport.OpenAsync(options);
        Assert.That((await DurableTestSupport.DrainAsync(reopened, "t")).Select(m => m.Text), Is.EqualTo(texts.Skip(texts.Count / 2)));
    }

    /// <summary>The open flags of this process's write handles on the log segments in <paramref name="folder"/>.</summary>
    private static List<int> SegmentWriteHandles(string folder)
    {
        var flags = new List<int>();
        foreach (var link in Directory.EnumerateFiles("/proc/self/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(link).LinkTarget;
            }
            catch (IOException)
            {
                continue;
            }

            if (target is null || !target.StartsWith(folder, StringComparison.Ordinal) || !Path.GetFileName(target).StartsWith("wal.log.", StringComparison.Ordinal))
            {
                continue;
            }

            string[] info;
            try
            {
                info = File.ReadAllLines($"/proc/self/fdinfo/{Path.GetFileName(link)}");
            }
            catch (IOException)
            {
                continue;
            }

            var value = Convert.ToInt32(info.First(line => line.StartsWith("flags:", StringComparison.Ordinal))["flags:".Length..].Trim(), 8);
            if ((value & AccessModes) == WriteOnly)
            {
                flags.Add(value);
            }
        }

        return flags;
    }
}
