using MiniQueue.Host;

namespace MiniQueue.Tests.Host;

/// <summary>The host's collection at start: one full, blocking, compacting collection when its hosted service starts.</summary>
[NonParallelizable]
public sealed class StartupCollectionTests
{
    [Test]
    public async Task Starting_MakesAFullBlockingCompactingCollection()
    {
        var collection = new StartupCollection();
        var fullBefore = GC.GetGCMemoryInfo(GCKind.FullBlocking).Index;
        var gen2Before = GC.CollectionCount(GC.MaxGeneration);

        await collection.StartAsync(CancellationToken.None);

        var full = GC.GetGCMemoryInfo(GCKind.FullBlocking);
        Assert.Multiple(() =>
        {
            Assert.That(full.Index, Is.GreaterThan(fullBefore), "a full blocking collection ran");
            Assert.That(full.Generation, Is.EqualTo(GC.MaxGeneration));
            Assert.That(full.Compacted, Is.True);
            Assert.That(GC.CollectionCount(GC.MaxGeneration), Is.GreaterThan(gen2Before));
        });
    }
}
