using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;

namespace MiniQueue;

/// <summary>Settings of a <see cref="MiniQueueEngine"/>. Every property has a default, so <c>new MiniQueueOptions()</c> is an in-memory queue.</summary>
public sealed class MiniQueueOptions
{
    /// <summary>The default of <see cref="MaxMessageBytes"/>: 4 MiB.</summary>
    public const int DefaultMaxMessageBytes = 4 * 1024 * 1024;

    /// <summary>The default of <see cref="MetricsTopicLimit"/>: 100 topics.</summary>
    public const int DefaultMetricsTopicLimit = 100;

    /// <summary>
    /// The folder of the durable store. Default: <see langword="null"/>, an in-memory queue whose messages live
    /// only as long as the engine (what unit tests want).
    /// </summary>
    public string? DataDirectory { get; set; }

    /// <summary>
    /// The longest a delayed (DACKed) message may stay undelivered past its due time while a consumer waits
    /// (the original's <c>-period</c>). Due times are kept with timers, so messages normally return on time;
    /// this only bounds the lateness when the clock jumps. Default: 1 second. Must be positive.
    /// </summary>
    public TimeSpan DelayCheckPeriod { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The largest message body the engine takes, in bytes. Default: <see cref="DefaultMaxMessageBytes"/> (4 MiB).</summary>
    public int MaxMessageBytes { get; set; } = DefaultMaxMessageBytes;

    /// <summary>
    /// The most topics the engine may have (a topic exists from its first publish on, and stays). A publish that would
    /// create one more fails with <see cref="MiniQueueTopicLimitException"/> and publishes nothing; a message moved to a
    /// dead-letter topic is never refused for it. In shared mode the count is the database's, checked by each process
    /// before it creates a topic, so processes creating topics at the same moment may pass it by a few. Default:
    /// <see langword="null"/>, no limit.
    /// </summary>
    public int? MaxTopics { get; set; }

    /// <summary>
    /// The clock that due times of delayed messages follow. Default: <see cref="TimeProvider.System"/>.
    /// Unit tests pass a <c>FakeTimeProvider</c> and advance it instead of sleeping.
    /// </summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Where the engine logs. Default: <see langword="null"/>, no logging.</summary>
    public ILoggerFactory? LoggerFactory { get; set; }

    /// <summary>
    /// Where the engine's <c>MiniQueue</c> meter comes from (dependency injection passes the app's). Default:
    /// <see langword="null"/>: the engine creates its own meter, which listeners still see.
    /// </summary>
    public IMeterFactory? MeterFactory { get; set; }

    /// <summary>
    /// How many topics the <c>MiniQueue</c> meter reports under their own <c>topic</c> tag: the busiest ones (messages
    /// published and delivered lately, plus messages queued now). The other topics are summed under the tag value
    /// <c>/other</c>, which no topic can have (a topic name has no <c>/</c>), and a topic with no messages and no
    /// consumers is not reported at all, so the number of series stays bounded however many topics there are.
    /// Default: <see cref="DefaultMetricsTopicLimit"/> (100). 0 reports every topic under <c>/other</c>. Must not be negative.
    /// </summary>
    public int MetricsTopicLimit { get; set; } = DefaultMetricsTopicLimit;

    /// <summary>
    /// When a publish is acknowledged (durable store only). Default: <see cref="MiniQueueCommitMode.Fsync"/>, after the
    /// message is on stable storage.
    /// </summary>
    public MiniQueueCommitMode CommitMode { get; set; } = MiniQueueCommitMode.Fsync;

    /// <summary>
    /// In <see cref="MiniQueueCommitMode.Interval"/> mode, the longest time between a publish and the commit that makes it
    /// durable, which is also the most a crash can lose. Default: 10 ms. Must be positive.
    /// </summary>
    public TimeSpan CommitInterval { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// The durable log's page size in bytes, a power of two of at least 64 KiB. A message larger than a page is written
    /// as several records. Default: <see langword="null"/>: what the data directory was created with, or 1 MiB for a
    /// new one. A value that differs from the directory's is refused.
    /// </summary>
    public int? LogPageBytes { get; set; }

    /// <summary>
    /// The durable log's segment (file) size in bytes, a power of two and a multiple of the page size. Space is reclaimed
    /// by whole segments. Default: <see langword="null"/>: what the data directory was created with, or 16 MiB for a new one.
    /// A value that differs from the directory's is refused.
    /// </summary>
    public long? LogSegmentBytes { get; set; }

    /// <summary>The memory the durable log buffers writes in, in bytes (at least two pages). Default: 4 pages.</summary>
    public long? LogMemoryBytes { get; set; }

    /// <summary>
    /// Whether the durable log fills its segment files with zeros ahead of its writes (the one it is in at open, and the
    /// next once it is half-way through one), while the disk has room for that beyond <see cref="DiskReserveBytes"/>.
    /// A write-through write into blocks a file already has costs ext4 (and xfs) less than one that extends the file:
    /// durable publishes are faster (docs/durability.md). The price is that the log's bytes are written twice. Default:
    /// <see langword="true"/>; turn it off where the second write matters more (an SSD's wear) or buys nothing (tmpfs,
    /// copy-on-write filesystems such as btrfs and ZFS, which never write in place).
    /// </summary>
    public bool FillLogSegmentsAhead { get; set; } = true;

    /// <summary>
    /// How many bytes of message bodies the durable engine keeps in memory so that delivering them needs no disk read
    /// (each body counted as the memory it takes: its length rounded up to 8 bytes, plus 24 bytes of array header).
    /// Beyond it, queued messages cost only a small index entry and their bodies are read back from the log.
    /// Default: 2 MiB (enough for the messages a consumer that keeps up is about to get; a long queue's bodies are read
    /// back 256 KiB of log at a time, which measured no slower than keeping them: consume+ACK over HTTP/2 was as fast
    /// with 1 or 2 MiB as with 8, and the host's peak memory under the publish benchmark 8 MB lower).
    /// Ignored in memory, where every body is kept.
    /// </summary>
    public long BodyCacheBytes { get; set; } = 2L * 1024 * 1024;

    /// <summary>
    /// The free disk space, in bytes, that publishes may not eat into (durable store only). While the data directory's
    /// filesystem has less available than this (or, with <see cref="MaxDiskBytes"/>, the cap leaves less), publishes fail
    /// with <see cref="MiniQueueStoreException"/> (HTTP 503), while consumers go on: their ACK, NACK, BACK and DACK
    /// records, commits, checkpoints and compaction still fit, and compaction gives whole segments back as consumers
    /// drain, after which publishes are taken again by themselves. Default: <see langword="null"/>, 32 MiB (or four
    /// log pages, if they are larger). 0 turns the reserve off: the store then meets a full disk as a failing
    /// device (nothing acknowledged is lost, but it takes publishes again only once something else frees space).
    /// </summary>
    public long? DiskReserveBytes { get; set; }

    /// <summary>
    /// The most disk space the data directory may take, in bytes (durable store only): publishes are refused while the
    /// room this leaves is under <see cref="DiskReserveBytes"/>, as if the disk had only this much. Default:
    /// <see langword="null"/>, no cap (the filesystem's own size is the limit). It must be more than the reserve.
    /// </summary>
    public long? MaxDiskBytes { get; set; }

    /// <summary>
    /// How long a consumer may hold a message before its lease passes: the message then returns to the front of its
    /// topic, exactly as if NACKed, and the consumer holds nothing (its next ACK fails). <c>TOUCH</c>
    /// (<see cref="MiniQueueConsumer.TouchAsync"/>) renews the lease. Default: <see langword="null"/>, no lease (a
    /// consumer holds its message until it settles it or goes away, as in the original). Per topic:
    /// <see cref="TopicPolicies"/>.
    /// </summary>
    public TimeSpan? Lease { get; set; }

    /// <summary>
    /// How many times a message is delivered at most: a message that would be delivered once more is moved instead,
    /// with its body, to the topic's dead-letter topic (<c>&lt;topic&gt;.dead</c>), where it is an ordinary message.
    /// Default: <see langword="null"/>, no limit. Per topic: <see cref="TopicPolicies"/>.
    /// </summary>
    public int? MaxDeliveries { get; set; }

    /// <summary>
    /// Settings for some topics (by name or prefix pattern) that override <see cref="Lease"/> and
    /// <see cref="MaxDeliveries"/>; the first policy that matches a topic applies to it.
    /// </summary>
    public IList<MiniQueueTopicPolicy> TopicPolicies { get; } = new List<MiniQueueTopicPolicy>();

    /// <summary>
    /// How long a publish with an idempotency key (<see cref="PublishOptions.IdempotencyKey"/>, the
    /// <c>Idempotency-Key</c> header) keeps a repeat of that key on the same topic from enqueuing anything; the window
    /// survives restarts. Default: 2 minutes. Per topic: <see cref="TopicPolicies"/>.
    /// </summary>
    public TimeSpan IdempotencyWindow { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first property whose value cannot work.</summary>
    public void Validate()
    {
        if (DelayCheckPeriod <= TimeSpan.Zero)
        {
            throw new ArgumentException($"{nameof(DelayCheckPeriod)} must be positive, not {DelayCheckPeriod}.", nameof(DelayCheckPeriod));
        }

        if (MaxTopics is <= 0)
        {
            throw new ArgumentException($"{nameof(MaxTopics)} must be positive or null, not {MaxTopics}.", nameof(MaxTopics));
        }

        if (MaxMessageBytes < 0)
        {
            throw new ArgumentException($"{nameof(MaxMessageBytes)} must not be negative, not {MaxMessageBytes}.", nameof(MaxMessageBytes));
        }

        if (MetricsTopicLimit < 0)
        {
            throw new ArgumentException($"{nameof(MetricsTopicLimit)} must not be negative, not {MetricsTopicLimit}.", nameof(MetricsTopicLimit));
        }

        if (TimeProvider is null)
        {
            throw new ArgumentException($"{nameof(TimeProvider)} must not be null.", nameof(TimeProvider));
        }

        if (CommitInterval <= TimeSpan.Zero)
        {
            throw new ArgumentException($"{nameof(CommitInterval)} must be positive, not {CommitInterval}.", nameof(CommitInterval));
        }

        if (!Enum.IsDefined(CommitMode))
        {
            throw new ArgumentException($"{nameof(CommitMode)} {CommitMode} is not a commit mode.", nameof(CommitMode));
        }

        if (LogPageBytes is { } page && (page < 64 * 1024 || !int.IsPow2(page)))
        {
            throw new ArgumentException($"{nameof(LogPageBytes)} must be a power of two of at least 64 KiB, not {page}.", nameof(LogPageBytes));
        }

        if (LogSegmentBytes is { } segment && (!long.IsPow2(segment) || segment < (LogPageBytes ?? 64 * 1024)))
        {
            throw new ArgumentException(
                $"{nameof(LogSegmentBytes)} must be a power of two of at least the page size, not {segment}.", nameof(LogSegmentBytes));
        }

        if (LogMemoryBytes is { } memory && (!long.IsPow2(memory) || memory < 2L * (LogPageBytes ?? 64 * 1024)))
        {
            throw new ArgumentException($"{nameof(LogMemoryBytes)} must be a power of two of at least two pages, not {memory}.", nameof(LogMemoryBytes));
        }

        if (BodyCacheBytes < 0)
        {
            throw new ArgumentException($"{nameof(BodyCacheBytes)} must not be negative, not {BodyCacheBytes}.", nameof(BodyCacheBytes));
        }

        if (DiskReserveBytes is < 0)
        {
            throw new ArgumentException($"{nameof(DiskReserveBytes)} must not be negative, not {DiskReserveBytes}.", nameof(DiskReserveBytes));
        }

        if (MaxDiskBytes is <= 0)
        {
            throw new ArgumentException($"{nameof(MaxDiskBytes)} must be positive, not {MaxDiskBytes}.", nameof(MaxDiskBytes));
        }

        if (MaxDiskBytes is { } cap && DiskReserveBytes is { } reserve && cap <= reserve)
        {
            throw new ArgumentException($"{nameof(MaxDiskBytes)} ({cap}) must be more than {nameof(DiskReserveBytes)} ({reserve}).", nameof(MaxDiskBytes));
        }

        ValidateLease(Lease, nameof(Lease));
        ValidateMaxDeliveries(MaxDeliveries, nameof(MaxDeliveries));
        ValidateWindow(IdempotencyWindow, nameof(IdempotencyWindow));
        for (var i = 0; i < TopicPolicies.Count; i++)
        {
            (TopicPolicies[i] ?? throw new ArgumentException($"{nameof(TopicPolicies)}[{i}] is null.", nameof(TopicPolicies))).Validate(i, nameof(TopicPolicies));
        }

        if (DataDirectory is { Length: 0 })
        {
            throw new ArgumentException($"{nameof(DataDirectory)} must be null (in memory) or a folder, not empty.", nameof(DataDirectory));
        }
    }

    internal static void ValidateLease(TimeSpan? lease, string name)
    {
        if (lease is { } value && (value <= TimeSpan.Zero || value > TimeSpan.FromDays(365)))
        {
            throw new ArgumentException($"{name} must be positive and at most a year, not {value}.", name);
        }
    }

    internal static void ValidateWindow(TimeSpan? window, string name)
    {
        if (window is { } value && (value <= TimeSpan.Zero || value > TimeSpan.FromDays(7)))
        {
            throw new ArgumentException($"{name} must be positive and at most 7 days, not {value}.", name);
        }
    }

    internal static void ValidateMaxDeliveries(int? maxDeliveries, string name)
    {
        if (maxDeliveries is < 1)
        {
            throw new ArgumentException($"{name} must be at least 1, not {maxDeliveries}.", name);
        }
    }
}

/// <summary>When the durable engine acknowledges a publish.</summary>
public enum MiniQueueCommitMode
{
    /// <summary>
    /// After the message is on stable storage (written and synced). Concurrent publishers share syncs (group commit).
    /// A crash loses no acknowledged message.
    /// </summary>
    Fsync = 0,

    /// <summary>
    /// As soon as the message is in the log's memory; a commit follows within <see cref="MiniQueueOptions.CommitInterval"/>.
    /// A crash (of the process or the machine) can lose the messages acknowledged during the last interval.
    /// </summary>
    Interval = 1,
}
