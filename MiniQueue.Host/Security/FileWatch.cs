namespace MiniQueue.Host.Security;

/// <summary>
/// Calls back once files have changed and then stayed still for a moment (an editor's save, or a deploy tool's rename
/// over the file, is several events). Each file's folder is watched, not the file, so that a file replaced by renaming
/// another over it is seen.
/// </summary>
internal sealed class FileWatch : IDisposable
{
    /// <summary>How long after the last change event the callback runs.</summary>
    private static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(200);

    private readonly List<FileSystemWatcher> _watchers = [];
    private readonly Timer _settled;

    /// <summary>Watches <paramref name="paths"/> (full paths); <paramref name="changed"/> runs on a thread-pool thread.</summary>
    public FileWatch(IEnumerable<string> paths, Action changed)
    {
        _settled = new Timer(static state => ((Action)state!)(), changed, Timeout.Infinite, Timeout.Infinite);
        foreach (var path in paths.Distinct(StringComparer.Ordinal))
        {
            var watcher = new FileSystemWatcher(Path.GetDirectoryName(path)!, Path.GetFileName(path))
            {
                NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.CreationTime,
            };
            watcher.Changed += OnChanged;
            watcher.Created += OnChanged;
            watcher.Renamed += OnChanged;
            watcher.EnableRaisingEvents = true;
            _watchers.Add(watcher);
        }
    }

    private void OnChanged(object sender, FileSystemEventArgs e) => _settled.Change(Settle, Timeout.InfiniteTimeSpan);

    public void Dispose()
    {
        foreach (var watcher in _watchers)
        {
            watcher.Dispose();
        }

        _settled.Dispose();
    }
}
