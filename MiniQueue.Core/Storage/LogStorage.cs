using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using MiniQueue.Engine;

namespace MiniQueue.Storage;

/// <summary>
/// The storage side of a durable local engine: its log (<see cref="ILogStore"/>), where the live bodies are in it
/// (<see cref="LogSpace"/>), the bodies kept in memory (<see cref="BodyCache"/>), a journal per topic
/// (<see cref="LogJournal"/>), which publishes the log can take now, and the background care of the log: reclaiming
/// space (compaction) and coming back after a device failure. An in-memory engine has none of this.
/// </summary>
internal sealed partial class LogStorage : IAsyncDisposable
{
    private readonly LocalBackend _engine;
    private readonly ILogger _logger;
    private readonly MiniQueueMetrics _metrics;
    private readonly Channel<bool> _maintenanceRequests = WakeUps.Create();

    private readonly CancellationTokenSource _stopping = new();
    private Task _maintenance = Task.CompletedTask;
    private long _lastSpaceMaintenance;

    public LogStorage(LocalBackend engine, ILogStore store, long bodyCacheBytes, ILogger logger, MiniQueueMetrics metrics)
    {
        _engine = engine;
        Store = store;
        Space = new LogSpace(store.SegmentSize, store.PageSize);
        Bodies = new BodyCache(bodyCacheBytes);
        _logger = logger;
        _metrics = metrics;
    }

    public ILogStore Store { get; }

    public LogSpace Space { get; }

    public BodyCache Bodies { get; }

    /// <summary>The room for topics' read-ahead windows: 32 of <see cref="BodyReadAhead.WindowBytes"/> (8 MiB).</summary>
    public ReadAheadBudget ReadAhead { get; } = new(32);

    /// <summary>The journal of a topic of the engine.</summary>
    public TopicJournal JournalOf(TopicQueue topic) => new LogJournal(topic, this);

    /// <summary>Starts the background care of the log (once the engine has recovered).</summary>
    public void Start() => _maintenance = Task.Run(MaintainAsync, CancellationToken.None);

    /// <summary>
    /// How a publish of a body of <paramref name="length"/> bytes can go into the log now.
    /// </summary>
    /// <exception cref="MiniQueueStoreException">The disk is under its reserve: the publish is refused.</exception>
    public PublishAdmission Admit(int length)
    {
        var recordLength = LogRecord.PublishLength(TopicName.MaxUtf8Bytes, length);
        if (Store.LacksSpaceFor(Store.FootprintOf(recordLength)))
        {
            throw RefusedForSpace();
        }

        if (Store.RecordLimit > 0 && recordLength > Store.RecordLimit)
        {
            return PublishAdmission.InParts;
        }

        return Store.HasRoom ? PublishAdmission.Now : PublishAdmission.WhenRoom;
    }

    /// <summary>A publish refused because the disk is under its reserve; compaction is asked to look for space to free.</summary>
    private MiniQueueStoreException RefusedForSpace()
    {
        _metrics.RefusedForSpace();
        var now = Environment.TickCount64;
        if (now - Volatile.Read(ref _lastSpaceMaintenance) >= 100)
        {
            Volatile.Write(ref _lastSpaceMaintenance, now);
            RequestMaintenance();
        }

        return new MiniQueueStoreException(
            "The message was not published: the disk of the durable store is full or nearly so (publishes stop while its free space, less the message, would be under the reserve). " +
            "Publishes are taken again once consumers have drained enough messages.");
    }

    /// <summary>Asks the maintenance task to look at the store: a new log segment, or a failure.</summary>
    public void RequestMaintenance() => _maintenanceRequests.Writer.TryWrite(true);

    /// <summary>A record the store did not take (logged; maintenance looks at the store).</summary>
    public void OnRecordNotLogged(LogRecord record, string topic, Exception exception)
    {
        EngineLog.RecordNotLogged(_logger, record.Kind, record.MessageId, topic, exception);
        RequestMaintenance();
    }

    /// <summary>The disk: the room left, the reserve, and whether publishes are refused (null for a store without a disk).</summary>
    public (long Available, long Reserve, bool Low)? DiskSpace() =>
        Store is FasterLogStore durable ? (durable.AvailableBytes, durable.ReserveBytes, durable.IsLowOnSpace) : null;

    /// <summary>The bytes the log takes on disk.</summary>
    public long LogBytes() => Store is FasterLogStore durable ? durable.DiskBytes() : 0;

    /// <summary>Stops the background care of the log; the engine then closes its topics, then disposes this.</summary>
    public async ValueTask StopAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        _maintenanceRequests.Writer.TryComplete();
        await _maintenance.ConfigureAwait(false);
    }

    /// <summary>Closes the store after a final commit.</summary>
    public async ValueTask DisposeAsync()
    {
        await Store.DisposeAsync().ConfigureAwait(false);
        _stopping.Dispose();
        _maintenanceGate.Dispose();
    }
}

/// <summary>How a publish can go into the log now (see <see cref="LogStorage.Admit"/>).</summary>
internal enum PublishAdmission
{
    /// <summary>At once.</summary>
    Now,

    /// <summary>Once the log's write buffer has room.</summary>
    WhenRoom,

    /// <summary>As several records (the body is larger than one), with commits held back meanwhile.</summary>
    InParts,
}
