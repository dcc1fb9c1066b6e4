using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace MiniQueue.Http.Hosting;

/// <summary>
/// Owns the application's <see cref="MiniQueueEngine"/>: opens it when the host starts (or when something needs it
/// earlier, whichever comes first) and disposes it when the host stops, so held messages return and a final commit
/// is made.
/// </summary>
internal sealed class MiniQueueEngineHost : IHostedService, IAsyncDisposable
{
    private readonly IOptions<MiniQueueOptions> _options;
    private readonly IServiceProvider _services;
    private readonly MiniQueueEngineOpener? _opener;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private Task<MiniQueueEngine>? _opening;
    private bool _closed;

    public MiniQueueEngineHost(
        IOptions<MiniQueueOptions> options, ILoggerFactory loggerFactory, IServiceProvider services, MiniQueueEngineOpener? opener = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _options = options;
        _services = services;
        _opener = opener;
        _logger = loggerFactory.CreateLogger(HttpLog.Category);
    }

    /// <summary>The engine, opened on first use; after the host stopped, a disposed engine (or ObjectDisposedException).</summary>
    public ValueTask<MiniQueueEngine> GetEngineAsync()
    {
        var opening = Volatile.Read(ref _opening) ?? StartOpening();
        return opening.IsCompletedSuccessfully ? ValueTask.FromResult(opening.Result) : new ValueTask<MiniQueueEngine>(opening);
    }

    /// <summary>The engine for synchronous callers (the DI factory); blocks while it opens.</summary>
    public MiniQueueEngine GetEngine() => GetEngineAsync().AsTask().GetAwaiter().GetResult();

    public async Task StartAsync(CancellationToken cancellationToken) => await GetEngineAsync().AsTask().WaitAsync(cancellationToken).ConfigureAwait(false);

    public async Task StopAsync(CancellationToken cancellationToken) => await DisposeAsync().AsTask().WaitAsync(cancellationToken).ConfigureAwait(false);

    public async ValueTask DisposeAsync()
    {
        Task<MiniQueueEngine>? opening;
        lock (_lock)
        {
            if (_closed)
            {
                return;
            }

            _closed = true;
            opening = _opening;
            _opening ??= Task.FromException<MiniQueueEngine>(
                new ObjectDisposedException(nameof(MiniQueueEngine), "The MiniQueue engine was closed when the host stopped."));
        }

        if (opening is null)
        {
            return;
        }

        MiniQueueEngine engine;
        try
        {
            engine = await opening.ConfigureAwait(false);
        }
        catch (Exception)
        {
            // It never opened; the failure was reported to whoever started it.
            return;
        }

        await engine.DisposeAsync().ConfigureAwait(false);
        HttpLog.EngineClosed(_logger);
    }

    private Task<MiniQueueEngine> StartOpening()
    {
        lock (_lock)
        {
            return _opening ??= _closed
                ? Task.FromException<MiniQueueEngine>(new ObjectDisposedException(nameof(MiniQueueEngine), "The MiniQueue engine was closed when the host stopped."))
                : OpenAsync();
        }
    }

    private async Task<MiniQueueEngine> OpenAsync()
    {
        var engine = _opener is null
            ? await MiniQueueEngine.OpenAsync(_options.Value).ConfigureAwait(false)
            : await _opener.OpenAsync(_services, _options.Value, CancellationToken.None).ConfigureAwait(false);
        HttpLog.EngineOpened(_logger);
        return engine;
    }
}
