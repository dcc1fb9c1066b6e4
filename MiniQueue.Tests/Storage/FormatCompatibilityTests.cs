using System.Formats.Tar;
using System.IO.Compression;
using MiniQueue.Storage;

namespace MiniQueue.Tests.Storage;

/// <summary>
/// A data directory written by an earlier version opens in this one with everything in it. The fixture
/// (Storage/Fixtures/format1-2026-12.tar.gz) was written by <see cref="WriteFixture"/> with the code of 2026-12-02 (log
/// format 1, default settings); it stays as it is when the format changes, and a newer fixture is added beside it.
/// </summary>
[CancelAfter(60_000)]
public sealed class FormatCompatibilityTests
{
    private static readonly DateTimeOffset s_writtenAt = new(2026, 12, 2, 0, 0, 0, TimeSpan.Zero);

    private static string FixturePath => Path.Combine(TestContext.CurrentContext.TestDirectory, "Storage", "Fixtures", "format1-2026-12.tar.gz");

    /// <summary>The large message's body: 1.5 MiB, larger than a log page (1 MiB), so it was written as parts.</summary>
    private static byte[] LargeBody() => [.. Enumerable.Range(0, (3 * 1024 * 1024) / 2).Select(static i => (byte)(i % 251))];

    [Test]
    public async Task ADirectoryWrittenByFormat1_Opens_WithEveryMessageInItsState()
    {
        using var directory = new TempDirectory();
        await using (var archive = new GZipStream(File.OpenRead(FixturePath), CompressionMode.Decompress))
        {
            await TarFile.ExtractToDirectoryAsync(archive, directory.Path, overwriteFiles: false);
        }

        Assert.That(StoreManifest.TryRead(directory.Path)?.Format, Is.EqualTo(1), "the fixture is of format 1");

        var clock = TestSupport.NewClock();
        clock.SetUtcNow(s_writtenAt + TimeSpan.FromSeconds(30));
        await using var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { DataDirectory = directory.Path, TimeProvider = clock });
        Assert.That(StoreManifest.TryRead(directory.Path)?.Format, Is.EqualTo(StoreManifest.CurrentFormat), "opening upgrades the manifest");

        using (Assert.EnterMultipleScope())
        {
            // o1 was ACKed; o2 DACKed for 60 s (not due yet); o3 was held when the writer stopped, so it is back in front.
            Assert.That(queue.GetStats("orders"), Is.EqualTo(new TopicStats(3, 0, 1, 0)));
            Assert.That(queue.GetStats("gone").Ready, Is.Zero, "purged");
            Assert.That((await DurableTestSupport.DrainAsync(queue, "orders")).Select(static m => m.Text), Is.EqualTo(new[] { "o3", "o4", "o5" }));
        }

        clock.Advance(TimeSpan.FromSeconds(31));
        Assert.That(await DurableTestSupport.DrainAsync(queue, "orders"), Is.EqualTo(new[] { ("o2", 1) }), "the DACKed message, due now, with its count");

        await using (var big = queue.Subscribe("big"))
        {
            var delivery = await big.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
            Assert.That(delivery.Payload.ToArray(), Is.EqualTo(LargeBody()), "the message written in parts, whole");
            await big.AckAsync();
            Assert.That(await big.ReceiveTextAsync(), Is.EqualTo("after the large one"));
            await big.AckAsync();
        }

        // The old directory takes new messages, and keeps them across a reopening.
        await queue.PublishAsync("orders", "new");
        await queue.DisposeAsync();
        await using var reopened = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { DataDirectory = directory.Path, TimeProvider = clock });
        using (Assert.EnterMultipleScope())
        {
            Assert.That(await DurableTestSupport.DrainAsync(reopened, "orders"), Is.EqualTo(new[] { ("new", 0) }));
            Assert.That(reopened.GetStats("big").Ready, Is.Zero);
        }
    }

    /// <summary>
    /// Writes the fixture into MINIQUEUE_FIXTURE_OUT (a .tar.gz path). Run by hand, once per format:
    /// <c>MINIQUEUE_FIXTURE_OUT=$PWD/MiniQueue.Tests/Storage/Fixtures/formatN-YYYY-MM.tar.gz dotnet test MiniQueue.slnx -c Release --filter Name=WriteFixture</c>.
    /// </summary>
    [Test]
    [Explicit("Writes the checked-in fixture; run by hand when the log format changes")]
    public async Task WriteFixture()
    {
        var output = Environment.GetEnvironmentVariable("MINIQUEUE_FIXTURE_OUT");
        Assume.That(output, Is.Not.Null.And.Not.Empty, "set MINIQUEUE_FIXTURE_OUT to the .tar.gz to write");

        using var directory = new TempDirectory();
        var clock = TestSupport.NewClock();
        clock.SetUtcNow(s_writtenAt);
        await using (var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { DataDirectory = directory.Path, TimeProvider = clock }))
        {
            foreach (var text in new[] { "o1", "o2", "o3", "o4", "o5" })
            {
                await queue.PublishAsync("orders", text);
            }

            var acker = queue.Subscribe("orders");
            Assert.That(await acker.ReceiveTextAsync(), Is.EqualTo("o1"));
            await acker.AckAsync();
            var dacker = queue.Subscribe("orders");
            Assert.That(await dacker.ReceiveTextAsync(), Is.EqualTo("o2"));
            await dacker.DackAsync(TimeSpan.FromSeconds(60));
            var holder = queue.Subscribe("orders");
            Assert.That(await holder.ReceiveTextAsync(), Is.EqualTo("o3"));

            await queue.PublishAsync("gone", "purged 1");
            await queue.PublishAsync("gone", "purged 2");
            await queue.PurgeAsync("gone");

            await queue.PublishAsync("big", LargeBody());
            await queue.PublishAsync("big", "after the large one");
        }

        await using var file = File.Create(output!);
        await using var gzip = new GZipStream(file, CompressionLevel.SmallestSize);
        await TarFile.CreateFromDirectoryAsync(directory.Path, gzip, includeBaseDirectory: false);
    }
}
