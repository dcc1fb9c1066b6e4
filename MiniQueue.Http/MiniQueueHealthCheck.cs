using Microsoft.Extensions.Diagnostics.HealthChecks;
using MiniQueue.Http.Hosting;

namespace MiniQueue.Http;

/// <summary>
/// Healthy when the engine is open and its store takes records (<see cref="MiniQueueEngine.IsWritable"/>); degraded while
/// it refuses publishes for lack of disk space (<see cref="MiniQueueEngine.IsDiskLow"/>; consumers still work, and
/// ASP.NET Core answers a degraded check with 200 by default); unhealthy otherwise.
/// </summary>
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

        if (!engine.IsWritable)
        {
            return HealthCheckResult.Unhealthy("The MiniQueue engine is closed, or its store refuses records after a device failure.");
        }

        return engine.IsDiskLow
            ? HealthCheckResult.Degraded("The MiniQueue store refuses publishes: its disk is under the reserve. Consumers still work.")
            : HealthCheckResult.Healthy("The MiniQueue engine is open and its store takes records.");
    }
}
