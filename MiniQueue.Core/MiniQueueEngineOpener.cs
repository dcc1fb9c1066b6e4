namespace MiniQueue;

/// <summary>
/// How an application that keeps MiniQueue in its services (<c>AddMiniQueue</c>, package MiniQueue.Http) opens its
/// engine when not with <see cref="MiniQueueEngine.OpenAsync(MiniQueueOptions?, CancellationToken)"/>: registered as a
/// singleton, the last one registered is used. Shared mode registers one (<c>AddMiniQueuePostgreSql</c>, package
/// MiniQueue.PostgreSql).
/// </summary>
public sealed class MiniQueueEngineOpener
{
    private readonly Func<IServiceProvider, MiniQueueOptions, CancellationToken, ValueTask<MiniQueueEngine>> _open;

    /// <summary>An opener that calls <paramref name="open"/> with the application's services and the bound options.</summary>
    public MiniQueueEngineOpener(Func<IServiceProvider, MiniQueueOptions, CancellationToken, ValueTask<MiniQueueEngine>> open)
    {
        ArgumentNullException.ThrowIfNull(open);
        _open = open;
    }

    /// <summary>Opens the engine with the application's <paramref name="services"/> and its bound <paramref name="options"/>.</summary>
    public ValueTask<MiniQueueEngine> OpenAsync(IServiceProvider services, MiniQueueOptions options, CancellationToken cancellationToken) =>
        _open(services, options, cancellationToken);
}
