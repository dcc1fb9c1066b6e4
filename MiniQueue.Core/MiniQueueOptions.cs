using Microsoft.Extensions.Logging;

namespace MiniQueue;

/// <summary>Settings of a <see cref="MiniQueueEngine"/>. Every property has a default, so <c>new MiniQueueOptions()</c> is an in-memory queue.</summary>
public sealed class MiniQueueOptions
{
    /// <summary>The default of <see cref="MaxMessageBytes"/>: 4 MiB.</summary>
    public const int DefaultMaxMessageBytes = 4 * 1024 * 1024;

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
    /// The clock that due times of delayed messages follow. Default: <see cref="TimeProvider.System"/>.
    /// Unit tests pass a <c>FakeTimeProvider</c> and advance it instead of sleeping.
    /// </summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Where the engine logs. Default: <see langword="null"/>, no logging.</summary>
    public ILoggerFactory? LoggerFactory { get; set; }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first property whose value cannot work.</summary>
    public void Validate()
    {
        if (DelayCheckPeriod <= TimeSpan.Zero)
        {
            throw new ArgumentException($"{nameof(DelayCheckPeriod)} must be positive, not {DelayCheckPeriod}.", nameof(DelayCheckPeriod));
        }

        if (MaxMessageBytes < 0)
        {
            throw new ArgumentException($"{nameof(MaxMessageBytes)} must not be negative, not {MaxMessageBytes}.", nameof(MaxMessageBytes));
        }

        if (TimeProvider is null)
        {
            throw new ArgumentException($"{nameof(TimeProvider)} must not be null.", nameof(TimeProvider));
        }

        if (DataDirectory is { Length: 0 })
        {
            throw new ArgumentException($"{nameof(DataDirectory)} must be null (in memory) or a folder, not empty.", nameof(DataDirectory));
        }
    }
}
