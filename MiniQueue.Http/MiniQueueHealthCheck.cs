using Microsoft.Extensions.Diagnostics.HealthChecks;
using MiniQueue.Http.Hosting;

namespace MiniQueue.Http;

/// <summary>Healthy when the engine is open and its store takes records (<see cref="MiniQueueEngine.IsWritable"/>).</summary>
internal sealed class MiniQueueHealthCheck(MiniQueueEngineHost engineHost) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        MiniQueueEngine engine;
        try
        {
            engine = await engineHost.GetEngineAsync().AsTask().WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is not OperationCanceledException)
        {
            return HealthCheckResult.Unhealthy("The MiniQueue engine did not open.", exception);
        }

        return engine.IsWritable
            ? HealthCheckResult.Healthy("The MiniQueue engine is open and its store takes records.")
            : HealthCheckResult.Unhealthy("The MiniQueue engine is closed, or its store refuses records after a device failure.");
    }
}
