using MiniQueue.Engine;

namespace MiniQueue.Tests.Engine;

public sealed class ChunkedQueueTests
{
    [Test]
    public void RandomOperations_BehaveLikeAQueue_AcrossChunkBoundaries()
    {
        var random = new Random(1201);
        var chunked = new ChunkedQueue<(long, string?)>();
        var reference = new Queue<(long, string?)>();
        long next = 0;
        for (var step = 0; step < 200_000; step++)
        {
            var roll = random.Next(100);
            if (roll < 55)
            {
                // Bursts so that the queue grows across many chunks, then drains.
                var burst = random.Next(1, step % 5000 < 2500 ? 50 : 5);
                for (var i = 0; i < burst; i++)
                {
                    var item = (next++, next % 3 == 0 ? null : "body");
                    chunked.Enqueue(item);
                    reference.Enqueue(item);
                }
            }
            else if (roll < 98)
            {
                Assert.That(chunked.TryDequeue(out var got), Is.EqualTo(reference.TryDequeue(out var expected)));
                Assert.That(got, Is.EqualTo(expected));
            }
            else if (roll < 99)
            {
                Assert.That(chunked, Is.EqualTo(reference));
                Assert.That(chunked.ToArray(), Is.EqualTo(reference.ToArray()));
            }
            else
            {
                chunked.Clear();
                reference.Clear();
            }

            Assert.That(chunked.Count, Is.EqualTo(reference.Count));
        }
    }

    [Test]
    public void AQueueOfManyChunks_EnumeratesInOrder_AndDrainsToEmpty()
    {
        var queue = new ChunkedQueue<int>();
        const int Count = (ChunkedQueue<int>.ChunkSize * 5) + 17;
        for (var i = 0; i < Count; i++)
        {
            queue.Enqueue(i);
        }

        Assert.That(queue, Is.EqualTo(Enumerable.Range(0, Count)));
        for (var i = 0; i < Count; i++)
        {
            Assert.That(queue.TryDequeue(out var item) && item == i, Is.True);
        }

        Assert.That(queue.TryDequeue(out _), Is.False);
        Assert.That(queue.Count, Is.Zero);
        queue.Enqueue(42);
        Assert.That(queue.ToArray(), Is.EqualTo(new[] { 42 }));
    }
}
