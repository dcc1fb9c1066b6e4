namespace MiniQueue.Http.Hosting;

/// <summary>
/// Opens the engine; <see cref="MiniQueueEngineHost"/> uses one from the services when there is one, and
/// <see cref="MiniQueueEngine.OpenAsync(MiniQueueOptions?, CancellationToken)"/> otherwise. The tests register one
/// that opens the engine over a failing store, to see how the HTTP front reports store faults.
/// </summary>
internal sealed class MiniQueueEngineFactory(Func<MiniQueueOptions, CancellationToken, ValueTask<MiniQueueEngine>> open)
{
    public ValueTask<MiniQueueEngine> OpenAsync(MiniQueueOptions options, CancellationToken cancellationToken) => open(options, cancellationToken);
}
