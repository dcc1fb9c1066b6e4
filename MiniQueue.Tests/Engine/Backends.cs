using MiniQueue.PostgreSql;
using MiniQueue.Tests.PostgreSql;
using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Engine;

/// <summary>The backends of the engine, which the rule and model suites run against one by one.</summary>
public enum Backend
{
    /// <summary>Messages in memory only (no <see cref="MiniQueueOptions.DataDirectory"/>).</summary>
    InMemory,

    /// <summary>The durable store: FasterLog in a temporary folder.</summary>
    FasterLog,

    /// <summary>Shared mode: a database of its own on the run's throwaway PostgreSQL cluster.</summary>
    PostgreSql,
}

/// <summary>Opens engines on a backend for one test, and deletes the folders of the durable ones afterwards.</summary>
internal sealed class BackendEngines(Backend backend) : IDisposable
{
    private readonly List<TempDirectory> _directories = [];
    private string? _database;

    /// <summary>The connection string of the test's database (shared mode; null before the first engine opened).</summary>
    public string? Database => _database;

    public Backend Backend { get; } = backend;

    /// <summary>A new engine on the backend, with a fake clock unless one is given.</summary>
    public async ValueTask<MiniQueueEngine> OpenAsync(TimeProvider? time = null, Action<MiniQueueOptions>? configure = null)
    {
        var options = new MiniQueueOptions { TimeProvider = time ?? TestSupport.NewClock() };
        if (Backend == Backend.FasterLog)
        {
            var directory = new TempDirectory();
            _directories.Add(directory);
            options.DataDirectory = directory.Path;
            options.LogPageBytes = 64 * 1024;
            options.LogSegmentBytes = 1024 * 1024;
        }

        configure?.Invoke(options);
        if (Backend == Backend.PostgreSql)
        {
            // Every engine of a test opens the same database: a second one is another process on the same queue.
            return await MiniQueuePostgreSql.OpenAsync(await DatabaseAsync(), options, ProcessLease, CancellationToken.None);
        }

        return await MiniQueueEngine.OpenAsync(options);
    }

    /// <summary>The test's database (shared mode), created on first use.</summary>
    public async Task<string> DatabaseAsync() => _database ??= await (await PostgreSqlCluster.SharedAsync()).CreateDatabaseAsync();

    /// <summary>The process lease of shared-mode engines in tests: short, so that a dead process's holds return soon.</summary>
    public static TimeSpan ProcessLease { get; } = TimeSpan.FromSeconds(3);

    public void Dispose()
    {
        foreach (var directory in _directories)
        {
            directory.Dispose();
        }

        _directories.Clear();
    }
}
