using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;

namespace MiniQueue.Storage;

/// <summary>
/// Work handed to a few threads of their own (the log's writers), with a wait that suits how often work comes. A taker
/// whose last wait was short spins a little before it sleeps, as <see cref="SemaphoreSlim"/> does (it stays runnable for
/// work that comes soon, as a durable publish load's commits do); one whose last wait was long sleeps at once. Spinning
/// for work that comes every few milliseconds (the ACK records of a consume load) only gave the CPU away again and
/// again: on the benchmark VM each writer's yields cost consumers 1.4 µs a message (docs/benchmarks.md, sixteenth round).
/// </summary>
internal sealed class WriteQueue<T>
    where T : class
{
    /// <summary>The spins before sleeping, as <see cref="SemaphoreSlim"/> makes them.</summary>
    private const int SpinsBeforeSleep = 35;

    /// <summary>A wait this long or longer (2 ms, in <see cref="Stopwatch"/> ticks) makes the next one sleep at once.</summary>
    private static readonly long s_longWait = Stopwatch.Frequency / 500;

    private readonly Queue<T> _items = new();
    private int _count;
    private int _sleeping;
    private bool _completed;

    /// <summary>Hands <paramref name="item"/> to a taker.</summary>
    /// <exception cref="InvalidOperationException"><see cref="CompleteAdding"/> was called.</exception>
    public void Add(T item)
    {
        lock (_items)
        {
            if (_completed)
            {
                throw new InvalidOperationException("The queue was completed: it takes no more work.");
            }

            _items.Enqueue(item);
            Volatile.Write(ref _count, _items.Count);
            if (_sleeping > 0)
            {
                Monitor.Pulse(_items);
            }
        }
    }

    /// <summary>
    /// The next item, in the order they were added, waiting for one if need be; false once <see cref="CompleteAdding"/>
    /// was called and every item was taken.
    /// </summary>
    /// <param name="spin">
    /// The taker's own: whether to spin before sleeping. Start with true; each call sets it from how long this wait took.
    /// </param>
    /// <param name="item">The item taken.</param>
    public bool TryTake(ref bool spin, [NotNullWhen(true)] out T? item)
    {
        var started = 0L;
        if (Volatile.Read(ref _count) == 0)
        {
            started = Stopwatch.GetTimestamp();
            if (spin)
            {
                var spinner = new SpinWait();
                while (Volatile.Read(ref _count) == 0 && !Volatile.Read(ref _completed) && spinner.Count < SpinsBeforeSleep)
                {
                    spinner.SpinOnce(sleep1Threshold: -1);
                }
            }
        }

        lock (_items)
        {
            while (!_items.TryDequeue(out item))
            {
                if (_completed)
                {
                    return false;
                }

                started = started == 0 ? Stopwatch.GetTimestamp() : started;
                _sleeping++;
                Monitor.Wait(_items);
                _sleeping--;
            }

            Volatile.Write(ref _count, _items.Count);
        }

        spin = started == 0 || Stopwatch.GetTimestamp() - started < s_longWait;
        return true;
    }

    /// <summary>Takes no more items; takers get what is left, then false.</summary>
    public void CompleteAdding()
    {
        lock (_items)
        {
            _completed = true;
            Monitor.PulseAll(_items);
        }
    }
}
