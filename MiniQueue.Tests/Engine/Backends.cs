using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Engine;

/// <summary>The local backends of the engine, which the rule and model suites run against one by one.</summary>
public enum Backend
{
    /// <summary>Messages in memory only (no <see cref="MiniQueueOptions.DataDirectory"/>).</summary>
    InMemory,

    /// <summary>The durable store: FasterLog in a temporary folder.</summary>
    FasterLog,
}

/// <summary>Opens engines on a backend for one test, and deletes the folders of the durable ones afterwards.</summary>
internal sealed class BackendEngines(Backend backend) : IDisposable
{
    private readonly List<TempDirectory> _directories = [];

    public Backend Backend { get; } = backend;

    /// <summary>A new engine on the backend, with a fake clock unless one is given.</summary>
    public ValueTask<MiniQueueEngine> OpenAsync(TimeProvider? time = null, Action<MiniQueueOptions>? configure = null)
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
        return MiniQueueEngine.OpenAsync(options);
    }

    public void Dispose()
    {
        foreach (var directory in _directories)
        {
            directory.Dispose();
        }

        _directories.Clear();
    }
}
