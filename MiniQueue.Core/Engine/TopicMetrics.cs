using System.Collections.Concurrent;
using System.Diagnostics;

namespace MiniQueue.Engine;

/// <summary>The per-topic counters of the <c>MiniQueue</c> meter.</summary>
internal enum TopicCounter
{
    Published,
    Delivered,
    Acked,
    Nacked,
    Backed,
    Dacked,
    LeaseExpired,
    DeadLettered,
    Redriven,
    Duplicates,
}

/// <summary>
/// The per-topic values of the <c>MiniQueue</c> meter, with a bounded number of topics. Counts are kept per topic as
/// operations happen; at each collection the busiest topics (at most the limit) are reported under their own name and
/// all the others are summed under <see cref="OtherTopics"/>, so the number of series does not grow with the number of
/// topics. A topic with no messages and no consumers is not reported at all.
/// </summary>
/// <remarks>
/// <para>
/// Busiest means the most messages published and delivered lately (decayed with a half-life of
/// <see cref="TrafficHalfLife"/>) plus the messages queued now (ready, held and delayed). A reported topic keeps its
/// place until another outscores it twice over, so that labels do not change hands at every collection.
/// </para>
/// <para>
/// Counter values stay consistent for Prometheus-style consumers: the sum over all reported values is the total since
/// counting started, and no reported series ever goes down. When a topic gets its own name after having been part of
/// <see cref="OtherTopics"/>, what <see cref="OtherTopics"/> reported of it stays there and its own series starts with
/// what it counted since; when it loses its name (or is gone) its counts move to <see cref="OtherTopics"/>.
/// </para>
/// <para>
/// A collection is recognised as a round of the meter's observable instruments: the choice is made again when an
/// instrument is observed a second time since the last choice, so every instrument of one collection sees the same
/// choice, whichever instruments a listener enables.
/// </para>
/// </remarks>
internal sealed class TopicMetrics
{
    /// <summary>The <c>topic</c> tag value of the topics without their own: no topic has it, since a topic name has no <c>/</c>.</summary>
    public const string OtherTopics = "/other";

    public const int CounterCount = 10;

    /// <summary>How fast past traffic stops counting towards a topic's place.</summary>
    public static readonly TimeSpan TrafficHalfLife = TimeSpan.FromMinutes(1);

    private static readonly Func<string, Entry> s_newEntry = static topic => new Entry(topic);

    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly long[] _retired = new long[CounterCount];
    private readonly Func<IEnumerable<(string Topic, TopicStats Stats)>> _topics;
    private readonly TimeProvider _time;
    private readonly int _limit;
    private readonly Lock _lock = new();
    private Snapshot _snapshot = Snapshot.Empty;
    private long _lastChoice;
    private bool _chosen;
    private int _round;
    private ulong _observedSinceChoice;

    /// <param name="topics">Every topic of the engine with its counts now.</param>
    /// <param name="time">The clock of the traffic's decay.</param>
    /// <param name="limit">The most topics reported under their own name.</param>
    public TopicMetrics(Func<IEnumerable<(string Topic, TopicStats Stats)>> topics, TimeProvider time, int limit)
    {
        ArgumentNullException.ThrowIfNull(topics);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        _topics = topics;
        _time = time;
        _limit = limit;
    }

    /// <summary>Counts one operation of a topic; <paramref name="traffic"/> when it counts towards the topic's place.</summary>
    public void Count(string topic, TopicCounter counter, bool traffic, long amount = 1)
    {
        var entry = _entries.GetOrAdd(topic, s_newEntry);
        Interlocked.Add(ref entry.Counts[(int)counter], amount);
        if (traffic)
        {
            Interlocked.Increment(ref entry.Traffic);
        }

        // The entry was dropped (its topic looked gone) while we counted: the count might have been missed by the move
        // to the other topics' totals, so move what is left ourselves. The increment above is a full fence.
        if (Volatile.Read(ref entry.Removed) != 0)
        {
            MoveToRetired(entry);
        }
    }

    /// <summary>
    /// The values of counter <paramref name="counter"/> for this collection, as (topic, value) pairs;
    /// <paramref name="instrument"/> (0..63) identifies the instrument asking.
    /// </summary>
    public IReadOnlyList<(string Topic, long Value)> ObserveCounter(int instrument, TopicCounter counter)
    {
        var snapshot = Begin(instrument);
        var values = new List<(string, long)>(snapshot.Topics.Length + 1);
        foreach (var series in snapshot.Topics)
        {
            values.Add((series.Topic, series.Counts[(int)counter]));
        }

        if (snapshot.HasOther)
        {
            values.Add((OtherTopics, snapshot.OtherCounts[(int)counter]));
        }

        return values;
    }

    /// <summary>The values of a gauge computed from the topics' counts, for this collection.</summary>
    public IReadOnlyList<(string Topic, long Value)> ObserveGauge(int instrument, Func<TopicTotals, long> value)
    {
        var snapshot = Begin(instrument);
        var values = new List<(string, long)>(snapshot.Topics.Length + 1);
        foreach (var series in snapshot.Topics)
        {
            values.Add((series.Topic, value(series.Stats)));
        }

        if (snapshot.HasOther)
        {
            values.Add((OtherTopics, value(snapshot.OtherStats)));
        }

        return values;
    }

    private Snapshot Begin(int instrument)
    {
        Debug.Assert(instrument is >= 0 and < 64, "an instrument's bit");
        var bit = 1UL << instrument;
        lock (_lock)
        {
            if (!_chosen || (_observedSinceChoice & bit) != 0)
            {
                _snapshot = Choose();
                _observedSinceChoice = 0;
            }

            _observedSinceChoice |= bit;
            return _snapshot;
        }
    }

    /// <summary>Chooses the topics reported under their own name, settles the counts that change sides, and takes the values.</summary>
    private Snapshot Choose()
    {
        var now = _time.GetTimestamp();
        var decay = _chosen ? Math.Pow(0.5, _time.GetElapsedTime(_lastChoice, now) / TrafficHalfLife) : 1;
        _lastChoice = now;
        _chosen = true;
        _round++;

        var live = new List<Entry>();
        foreach (var (topic, stats) in _topics())
        {
            if (stats == default)
            {
                continue;
            }

            var entry = _entries.GetOrAdd(topic, s_newEntry);
            var traffic = Interlocked.Read(ref entry.Traffic);
            entry.Score = (entry.Score * decay) + (traffic - entry.SeenTraffic);
            entry.SeenTraffic = traffic;
            entry.Stats = stats;
            entry.Round = _round;
            live.Add(entry);
        }

        // Gone: no messages and no consumers. Its counts move to the other topics' totals and its series leaves.
        foreach (var pair in _entries)
        {
            if (pair.Value.Round != _round && _entries.TryRemove(pair))
            {
                Interlocked.Exchange(ref pair.Value.Removed, 1);
                MoveToRetired(pair.Value);
            }
        }

        live.Sort(static (a, b) =>
        {
            var byRank = b.Rank.CompareTo(a.Rank);
            return byRank != 0 ? byRank : string.CompareOrdinal(a.Topic, b.Topic);
        });
        var named = Math.Min(_limit, live.Count);
        for (var i = 0; i < live.Count; i++)
        {
            var entry = live[i];
            if (i < named)
            {
                if (!entry.Named && entry.CountedInOther is { } reported)
                {
                    // What it counted up to the last collection was reported as part of the other topics and stays
                    // there; its own series starts with what it counted since.
                    MoveToRetired(entry, reported);
                }

                entry.Named = true;
                entry.CountedInOther = null;
            }
            else if (entry.Named)
            {
                // Its own series leaves; what it reported there joins the other topics' totals.
                MoveToRetired(entry);
                entry.Named = false;
            }
        }

        var topics = new Series[named];
        for (var i = 0; i < named; i++)
        {
            topics[i] = new Series(live[i].Topic, ReadCounts(live[i]), TopicTotals.Of(live[i].Stats));
        }

        var otherCounts = new long[CounterCount];
        for (var c = 0; c < CounterCount; c++)
        {
            otherCounts[c] = Interlocked.Read(ref _retired[c]);
        }

        var otherStats = default(TopicTotals);
        for (var i = named; i < live.Count; i++)
        {
            var counts = ReadCounts(live[i]);
            live[i].CountedInOther = counts;
            for (var c = 0; c < CounterCount; c++)
            {
                otherCounts[c] += counts[c];
            }

            otherStats += TopicTotals.Of(live[i].Stats);
        }

        var hasOther = named < live.Count || otherCounts.Any(static count => count != 0);
        return new Snapshot(topics, hasOther, otherCounts, otherStats);
    }

    private static long[] ReadCounts(Entry entry)
    {
        var counts = new long[CounterCount];
        for (var c = 0; c < CounterCount; c++)
        {
            counts[c] = Interlocked.Read(ref entry.Counts[c]);
        }

        return counts;
    }

    /// <summary>Moves all of a topic's counts to the other topics' totals (each count moves exactly once, however counts race).</summary>
    private void MoveToRetired(Entry entry)
    {
        for (var c = 0; c < CounterCount; c++)
        {
            var count = Interlocked.Exchange(ref entry.Counts[c], 0);
            if (count != 0)
            {
                Interlocked.Add(ref _retired[c], count);
            }
        }
    }

    /// <summary>Moves <paramref name="counts"/> (no more than the topic has counted) to the other topics' totals.</summary>
    private void MoveToRetired(Entry entry, long[] counts)
    {
        for (var c = 0; c < CounterCount; c++)
        {
            if (counts[c] != 0)
            {
                Interlocked.Add(ref entry.Counts[c], -counts[c]);
                Interlocked.Add(ref _retired[c], counts[c]);
            }
        }
    }

    /// <summary>What the meter knows of one topic. Counts and traffic change under any thread; the rest under the lock.</summary>
    private sealed class Entry(string topic)
    {
        public readonly string Topic = topic;
        public readonly long[] Counts = new long[CounterCount];
        public long Traffic;
        public int Removed;

        public long SeenTraffic;
        public double Score;
        public TopicStats Stats;
        public int Round;
        public bool Named;

        /// <summary>Its counts as reported inside the other topics' totals at the last collection; null while it has its name.</summary>
        public long[]? CountedInOther;

        /// <summary>The place in the choice: traffic and queued messages, doubled for a topic that already has its name.</summary>
        public double Rank => (Score + Stats.Ready + Stats.Held + (double)Stats.Delayed) * (Named ? 2 : 1);
    }

    private readonly record struct Series(string Topic, long[] Counts, TopicTotals Stats);

    private sealed record Snapshot(Series[] Topics, bool HasOther, long[] OtherCounts, TopicTotals OtherStats)
    {
        public static readonly Snapshot Empty = new([], false, new long[CounterCount], default);
    }
}

/// <summary>A topic's counts, or a sum of topics' counts, wide enough for any sum.</summary>
internal readonly record struct TopicTotals(long Ready, long Held, long Delayed, long Consumers)
{
    public static TopicTotals Of(TopicStats stats) => new(stats.Ready, stats.Held, stats.Delayed, stats.Consumers);

    public static TopicTotals operator +(TopicTotals left, TopicTotals right) =>
        new(left.Ready + right.Ready, left.Held + right.Held, left.Delayed + right.Delayed, left.Consumers + right.Consumers);
}
