using MiniQueue.Storage;

namespace MiniQueue.Tests.Storage;

/// <summary>
/// The queue that hands the log's writes to its writer threads (<see cref="WriteQueue{T}"/>): order, waking a taker
/// that sleeps, the end of the work, and when a taker spins before it sleeps.
/// </summary>
[CancelAfter(30_000)]
public sealed class WriteQueueTests
{
    [Test]
    public void ItemsComeOutInOrder_AndAfterCompletionWhatIsLeft_ThenNothing()
    {
        var queue = new WriteQueue<string>();
        queue.Add("a");
        queue.Add("b");
        queue.Add("c");
        queue.CompleteAdding();

        var spin = true;
        var taken = new List<string>();
        while (queue.TryTake(ref spin, out var item))
        {
            taken.Add(item);
        }

        Assert.That(taken, Is.EqualTo(new[] { "a", "b", "c" }));
        Assert.That(queue.TryTake(ref spin, out _), Is.False, "and nothing after the end, without waiting");
        Assert.That(() => queue.Add("d"), Throws.InvalidOperationException, "a completed queue takes no more work");
    }

    [TestCase(true)]
    [TestCase(false)]
    public void ATakerThatWaits_GetsTheNextItem_OrTheEnd(bool spin)
    {
        var queue = new WriteQueue<string>();
        var got = new List<string?>();
        var taker = new Thread(() =>
        {
            var mode = spin;
            while (queue.TryTake(ref mode, out var item))
            {
                lock (got)
                {
                    got.Add(item);
                }
            }

            lock (got)
            {
                got.Add(null);
            }
        })
        { IsBackground = true };
        taker.Start();

        // The taker waits (asleep, once its spins are over) until the item comes.
        Assert.That(SpinWait.SpinUntil(() => taker.ThreadState.HasFlag(ThreadState.WaitSleepJoin), TestSupport.Bound), Is.True, "the taker sleeps");
        queue.Add("x");
        Assert.That(SpinWait.SpinUntil(() => Count(got) == 1, TestSupport.Bound), Is.True, "the item woke it");

        Assert.That(SpinWait.SpinUntil(() => taker.ThreadState.HasFlag(ThreadState.WaitSleepJoin), TestSupport.Bound), Is.True, "it sleeps again");
        queue.CompleteAdding();
        Assert.That(taker.Join(TestSupport.Bound), Is.True, "the end woke it, and it ended");
        Assert.That(got, Is.EqualTo(new[] { "x", null }));
    }

    [Test]
    public void ATakerSpinsFirst_AfterAShortWait_AndSleepsAtOnce_AfterALongOne()
    {
        var queue = new WriteQueue<string>();

        // An item that is there at once: no wait, so the next wait spins first.
        queue.Add("ready");
        var spin = false;
        Assert.That(queue.TryTake(ref spin, out _), Is.True);
        Assert.That(spin, Is.True, "no wait: spin next time");

        // An item that comes 100 ms later (at least; far over the 2 ms that count as long): sleep at once next time.
        string? item = null;
        var taker = new Thread(() => queue.TryTake(ref spin, out item)) { IsBackground = true };
        taker.Start();
        Thread.Sleep(100);
        queue.Add("late");
        Assert.That(taker.Join(TestSupport.Bound), Is.True, "the item woke the taker");
        Assert.That(item, Is.EqualTo("late"));
        Assert.That(spin, Is.False, "a long wait: sleep at once next time");
    }

    private static int Count(List<string?> got)
    {
        lock (got)
        {
            return got.Count;
        }
    }
}
