using System.Runtime.CompilerServices;
using MiniQueue.Engine;

namespace MiniQueue.Tests.Engine;

public sealed class EntryQueueTests
{
    [Test]
    public void RandomOperations_BehaveLikeAQueue_AcrossChunks_WithAnyIdsAddressesBodiesAndDacks()
    {
        var random = new Random(1204);
        var queue = new EntryQueue();
        var reference = new Queue<MessageEntry>();
        var bodies = new[] { new byte[] { 1 }, new byte[] { 2, 3 }, new byte[10] };
        long nextId = 1;
        long nextAddress = 64;
        for (var step = 0; step < 300_000; step++)
        {
            // Stretches of regular messages (one size, one after the other: the columns store nothing or 16 bits) and of
            // irregular ones (32 bits or full values), so that chunks widen from every width to every wider one.
            var regular = step % 20_000 < 10_000;
            var roll = random.Next(100);
            if (roll < 55)
            {
                // Bursts so that the queue grows across many chunks, then drains.
                var burst = random.Next(1, step % 5000 < 2500 ? 60 : 5);
                for (var i = 0; i < burst; i++)
                {
                    var entry = NextEntry(random, bodies, regular, ref nextId, ref nextAddress);
                    queue.Enqueue(entry);
                    reference.Enqueue(entry);
                }
            }
            else if (roll < 98)
            {
                Assert.That(queue.TryPeek(out var peeked), Is.EqualTo(reference.TryPeek(out var expectedPeek)));
                Assert.That(peeked, Is.EqualTo(expectedPeek));
                Assert.That(queue.TryDequeue(out var got), Is.EqualTo(reference.TryDequeue(out var expected)));
                Assert.That(got, Is.EqualTo(expected));
            }
            else if (roll < 99)
            {
                Assert.That(queue, Is.EqualTo(reference));
                Assert.That(queue.ToArray(), Is.EqualTo(reference.ToArray()));
            }
            else
            {
                queue.Clear();
                reference.Clear();
            }

            Assert.That(queue.Count, Is.EqualTo(reference.Count));
        }
    }

    [Test]
    public void AQueueOfManyChunks_EnumeratesInOrder_AndDrainsToEmpty()
    {
        var queue = new EntryQueue();
        const int Count = (EntryQueue.ChunkSize * 5) + 17;
        for (var i = 0; i < Count; i++)
        {
            queue.Enqueue(new MessageEntry(i, i * 40L, null, 10, 0));
        }

        Assert.That(queue.Select(entry => entry.Id), Is.EqualTo(Enumerable.Range(0, Count).Select(i => (long)i)));
        for (var i = 0; i < Count; i++)
        {
            Assert.That(queue.TryDequeue(out var entry), Is.True);
            Assert.That(entry, Is.EqualTo(new MessageEntry(i, i * 40L, null, 10, 0)));
        }

        Assert.That(queue.TryDequeue(out _), Is.False);
        Assert.That(queue.Count, Is.Zero);
        var last = new MessageEntry(42, 7, [9], 1, 3);
        queue.Enqueue(last);
        Assert.That(queue.ToArray(), Is.EqualTo(new[] { last }));
    }

    [Test]
    public void ValuesThatDoNotFitAnOffset_InTheMiddleOfAChunk_ComeBackExactly()
    {
        var queue = new EntryQueue();
        long[] ids = [5, 6, long.MaxValue, 7, -3, long.MinValue, int.MaxValue + 10L, 8];
        long[] addresses = [1L << 40, (1L << 40) + 100, 0, (1L << 40) + 200, long.MaxValue, 3, 4, 5];
        var expected = new List<MessageEntry>();

        // Fill past the first chunks so that the wide values land in a full-size chunk, after narrow ones.
        for (var i = 0; i < EntryQueue.ChunkSize + 100; i++)
        {
            var entry = new MessageEntry(1000 + i, 5000 + i, null, i, 0);
            queue.Enqueue(entry);
            expected.Add(entry);
        }

        for (var i = 0; i < ids.Length; i++)
        {
            var entry = new MessageEntry(ids[i], addresses[i], null, i, i);
            queue.Enqueue(entry);
            expected.Add(entry);
        }

        Assert.That(queue.ToArray(), Is.EqualTo(expected));
        foreach (var entry in expected)
        {
            Assert.That(queue.TryDequeue(out var got), Is.True);
            Assert.That(got, Is.EqualTo(entry));
        }
    }

    [Test]
    public void ADequeuedBody_IsNoLongerHeld_ByTheQueue()
    {
        var queue = new EntryQueue();
        var body = EnqueueTwoAndDequeueOne(queue);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();

        Assert.That(body.TryGetTarget(out _), Is.False, "the queue still references a body it handed out");
        Assert.That(queue.Count, Is.EqualTo(1));
    }

    // Not inlined, so that no slot of the test's own frame keeps the body alive.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference<byte[]> EnqueueTwoAndDequeueOne(EntryQueue queue)
    {
        var body = new byte[100];
        queue.Enqueue(new MessageEntry(1, 0, body, body.Length, 0));
        queue.Enqueue(new MessageEntry(2, 0, null, 0, 0));
        Assert.That(queue.TryDequeue(out var got) && got.Body == body, Is.True);
        return new WeakReference<byte[]>(body);
    }

    [TestCase(0, 0.0, 0.5, TestName = "A queued message costs next to nothing when published one after the other, one size")]
    [TestCase(1, 3.5, 4.5, TestName = "A queued message costs 4 bytes when ids and records are now and then further apart")]
    [TestCase(2, 9.5, 10.5, TestName = "A queued message costs 10 bytes when ids and records are far apart, lengths varied")]
    public void AQueuedMessageWithoutACachedBody_CostsWhatItsColumnsNeed_AndAnEmptyQueueLittle(int shape, double minimum, double maximum)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        var queue = new EntryQueue();
        var empty = GC.GetAllocatedBytesForCurrentThread() - before;

        var random = new Random(7);
        const int Count = EntryQueue.ChunkSize * 100;
        var entries = new MessageEntry[Count];
        long id = 1_000_000;
        long address = 4096;
        for (var i = 0; i < Count; i++)
        {
            // A 1 KiB message's record takes about 1,100 bytes of log.
            (id, address) = shape switch
            {
                0 => (id + 1, address + 1100),

                // Now and then another topic's message between, or a page's end skipped: 16 bits for ids and addresses.
                1 => (id + (random.Next(500) == 0 ? random.Next(2, 50) : 1), address + 1100 + (random.Next(500) == 0 ? random.Next(1, 1000) : 0)),

                // Many topics' messages between: 32 bits for ids and addresses.
                _ => (id + random.Next(1, 100_000), address + 1100 + random.Next(0, 1 << 20)),
            };
            entries[i] = new MessageEntry(id, address, null, 1024 + (shape == 2 ? random.Next(0, 1000) : 0), 0);
        }

        // What the queue keeps (a column widened on the way leaves its narrower array to the GC).
        before = GC.GetTotalMemory(forceFullCollection: true);
        foreach (var entry in entries)
        {
            queue.Enqueue(entry);
        }

        var perEntry = (double)(GC.GetTotalMemory(forceFullCollection: true) - before) / Count;

        TestContext.Out.WriteLine($"{perEntry:F3} bytes a queued message, {empty} bytes an empty queue");
        Assert.That(empty, Is.LessThan(1024), "an empty topic's queue");
        Assert.That(perEntry, Is.InRange(minimum, maximum), "bytes of index per queued message");
        Assert.That(queue, Is.EqualTo(entries));
    }

    private static MessageEntry NextEntry(Random random, byte[][] bodies, bool regular, ref long nextId, ref long nextAddress)
    {
        if (regular)
        {
            // Mostly exact guesses; now and then an id skipped (another topic's), a record a little further (a page's
            // end skipped) or another length: differences that fit 16 bits; rarely one that does not.
            var skew = random.Next(200);
            var regularId = nextId + (skew == 0 ? random.Next(1, 50) : 0);
            nextId = regularId + 1;
            var regularAddress = nextAddress + (skew == 1 ? random.Next(1, 3000) : skew == 2 ? random.Next(40_000, 1 << 20) : 0);
            nextAddress = regularAddress + 40;
            var length = skew == 3 ? random.Next(0, 20_000) : skew == 4 ? -random.Next(1, 1 << 30) : 10;
            return new MessageEntry(regularId, regularAddress, null, length, skew == 5 ? 1 : 0);
        }

        var roll = random.Next(1000);
        long id;
        long address;
        if (roll < 5)
        {
            // A message put back long after it was published, or one from far away in the log: no 32-bit offset.
            id = random.NextInt64(long.MinValue, long.MaxValue);
            address = random.NextInt64(0, long.MaxValue);
        }
        else if (roll < 50)
        {
            // An older message put back (BACK, NACK): a smaller id and address.
            id = nextId - random.Next(1, 100_000);
            address = nextAddress - random.Next(1, 10_000_000);
        }
        else
        {
            id = nextId++;
            address = nextAddress;
            nextAddress += random.Next(20, 5000);
        }

        var body = random.Next(4) == 0 ? bodies[random.Next(bodies.Length)] : null;
        var dacks = random.Next(20) == 0 ? random.Next(1, 5) : 0;
        return new MessageEntry(id, address, body, body?.Length ?? random.Next(0, 1 << 20), dacks);
    }
}
