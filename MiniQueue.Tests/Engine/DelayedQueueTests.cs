using MiniQueue.Engine;

namespace MiniQueue.Tests.Engine;

public sealed class DelayedQueueTests
{
    /// <summary>How the due times of the messages a test delays are made.</summary>
    public enum Dues
    {
        /// <summary>A clock that moves on, and a few delays (a topic's delayed publishes and DACKs).</summary>
        FewDelays,

        /// <summary>Any due time at all (DACKs with random back-off).</summary>
        Random,

        /// <summary>Ever earlier due times: every message would need a lane of its own, past the most kept.</summary>
        Falling,

        /// <summary>A clock that stands still: every due time the same, so the order of delaying decides.</summary>
        Frozen,
    }

    [TestCase(Dues.FewDelays)]
    [TestCase(Dues.Random)]
    [TestCase(Dues.Falling)]
    [TestCase(Dues.Frozen)]
    public void RandomOperations_TakeMessagesInTheOrderOfAHeap(Dues dues)
    {
        var random = new Random(1204 + (int)dues);
        var queue = new DelayedQueue();
        var reference = new PriorityQueue<MessageEntry, DueKey>();
        var bodies = new[] { new byte[] { 1 }, new byte[10] };
        long sequence = 0;
        long clock = 1_000_000_000;
        long id = 1;
        for (var step = 0; step < 200_000; step++)
        {
            var roll = random.Next(100);
            if (roll < 55)
            {
                var burst = random.Next(1, step % 8000 < 4000 ? 40 : 4);
                for (var i = 0; i < burst; i++)
                {
                    clock += dues == Dues.Frozen ? 0 : random.Next(0, 300);
                    var due = dues switch
                    {
                        Dues.FewDelays => clock + (random.Next(3) * 10_000_000L),
                        Dues.Random => random.NextInt64(0, 1L << 40),
                        Dues.Falling => (1L << 40) - clock,
                        _ => clock,
                    };
                    var body = random.Next(5) == 0 ? bodies[random.Next(bodies.Length)] : null;
                    var entry = new MessageEntry(id++, id * 100, body, body?.Length ?? 100, random.Next(3));
                    var key = new DueKey(due, ++sequence);
                    queue.Enqueue(entry, key);
                    reference.Enqueue(entry, key);
                }
            }
            else if (roll < 98)
            {
                Assert.That(queue.TryPeek(out var peeked, out var peekedKey), Is.EqualTo(reference.TryPeek(out var expectedPeek, out var expectedPeekKey)));
                Assert.That((peeked, peekedKey), Is.EqualTo((expectedPeek, expectedPeekKey)));
                Assert.That(queue.TryDequeue(out var got, out var gotKey), Is.EqualTo(reference.TryDequeue(out var expected, out var expectedKey)));
                Assert.That((got, gotKey), Is.EqualTo((expected, expectedKey)));
            }
            else if (roll < 99)
            {
                Assert.That(queue.UnorderedItems.OrderBy(static item => item.Priority), Is.EqualTo(reference.UnorderedItems.OrderBy(static item => item.Priority)));
            }
            else
            {
                queue.Clear();
                reference.Clear();
            }

            Assert.That(queue.Count, Is.EqualTo(reference.Count));
            Assert.That(queue.LaneCount, Is.LessThanOrEqualTo(DelayedQueue.MaxLanes));
        }

        while (reference.TryDequeue(out var expected, out var expectedKey))
        {
            Assert.That(queue.TryDequeue(out var got, out var gotKey), Is.True);
            Assert.That((got, gotKey), Is.EqualTo((expected, expectedKey)));
        }

        Assert.That(queue.TryDequeue(out _, out _), Is.False);
        Assert.That(queue.Count, Is.Zero);
        Assert.That(queue.LaneCount, Is.Zero);
    }

    [Test]
    public void MessagesDelayedByTheSameAmounts_TakeOneLaneEach()
    {
        var queue = new DelayedQueue();
        long[] delays = [30_000_000, 10_000_000, 600_000_000];
        for (var i = 0; i < 30_000; i++)
        {
            var now = 1_000_000L + (i * 7L);
            queue.Enqueue(new MessageEntry(i, i * 40L, null, 10, 0), new DueKey(now + delays[i % 3], i));
        }

        Assert.That(queue.LaneCount, Is.EqualTo(3));
        Assert.That(queue.Count, Is.EqualTo(30_000));
        var last = new DueKey(long.MinValue, 0);
        while (queue.TryDequeue(out _, out var key))
        {
            Assert.That(key, Is.GreaterThan(last));
            last = key;
        }
    }

    [Test]
    public void FallingDueTimes_PastTheMostLanes_AreStillTakenEarliestFirst()
    {
        var queue = new DelayedQueue();
        const int Count = DelayedQueue.MaxLanes * 3;
        for (var i = 0; i < Count; i++)
        {
            queue.Enqueue(new MessageEntry(i, i, null, 1, 0), new DueKey(Count - i, i));
        }

        Assert.That(queue.LaneCount, Is.EqualTo(DelayedQueue.MaxLanes));
        for (var i = Count - 1; i >= 0; i--)
        {
            Assert.That(queue.TryDequeue(out var entry, out var key), Is.True);
            Assert.That((entry.Id, key.DueTicks), Is.EqualTo(((long)i, (long)(Count - i))));
        }

        Assert.That(queue.LaneCount, Is.Zero);
    }

    [TestCase(false, 0.0, 1.0, TestName = "A delayed message costs next to nothing when delayed at a steady pace by one amount")]
    [TestCase(true, 3.5, 5.0, TestName = "A delayed message costs 4 bytes when delayed at an irregular pace by one amount")]
    public void ADelayedMessage_CostsAFewBytes_NotTheHeapsFortyEight(bool irregular, double minimum, double maximum)
    {
        var random = new Random(5);
        const int Count = 200_000;
        var items = new (MessageEntry Entry, DueKey Key)[Count];
        long now = 638_000_000_000_000_000;
        for (var i = 0; i < Count; i++)
        {
            now += irregular ? random.Next(0, 2000) : 150;
            items[i] = (new MessageEntry(5_000 + i, 4096 + (140L * i), null, 100, 0), new DueKey(now + 36_000_000_000, i + 1));
        }

        var queue = new DelayedQueue();
        var before = GC.GetTotalMemory(forceFullCollection: true);
        foreach (var (entry, key) in items)
        {
            queue.Enqueue(entry, key);
        }

        var perMessage = (double)(GC.GetTotalMemory(forceFullCollection: true) - before) / Count;
        TestContext.Out.WriteLine($"{perMessage:F3} bytes a delayed message, {queue.LaneCount} lane(s)");

        Assert.That(perMessage, Is.InRange(minimum, maximum), "bytes a delayed message");
        Assert.That(queue.UnorderedItems, Is.EqualTo(items), "one lane, in order");
    }
}
