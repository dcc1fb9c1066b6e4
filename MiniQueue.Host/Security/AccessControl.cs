namespace MiniQueue.Host.Security;

/// <summary>
/// The access file in force (<c>-auth</c>): read at the start (a bad file stops the host), then read again whenever it
/// changes. A changed file that cannot be read or is invalid is refused with an error line, and the one before stays in
/// force; a valid one applies to every request from then on (a removed token is refused at once; streams already open
/// go on).
/// </summary>
internal sealed class AccessControl : IDisposable
{
    private readonly string _path;
    private readonly FileWatch _watch;
    private ILogger _logger;
    private volatile AccessFile _current;

    public AccessControl(string path, ILogger logger)
    {
        _path = Path.GetFullPath(path);
        _logger = logger;
        _current = Read(_path);
        _watch = new FileWatch([_path], Reload);
    }

    /// <summary>Where reloads are logged (the host's logger exists only once the host is built).</summary>
    public void LogTo(ILogger logger) => _logger = logger;

    /// <summary>The access file in force.</summary>
    public AccessFile Current => _current;

    /// <summary>Reads and checks an access file; throws <see cref="FormatException"/> or an I/O exception saying why it cannot be used.</summary>
    public static AccessFile Read(string path) => AccessFile.Parse(File.ReadAllText(path));

    private void Reload()
    {
        try
        {
            var file = Read(_path);
            _current = file;
            HostLog.AccessFileReloaded(_logger, _path, file.Count);
        }
        catch (Exception exception) when (exception is FormatException or IOException or UnauthorizedAccessException)
        {
            HostLog.AccessFileRefused(_logger, _path, exception.Message);
        }
    }

    public void Dispose() => _watch.Dispose();
}
