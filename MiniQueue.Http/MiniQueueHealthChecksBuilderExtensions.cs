using Microsoft.Extensions.Diagnostics.HealthChecks;
using MiniQueue.Http;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds MiniQueue's health check.</summary>
public static class MiniQueueHealthChecksBuilderExtensions
{
    /// <summary>
    /// Adds a check that is healthy when the MiniQueue engine is open and its store takes records, and unhealthy when
    /// the store refuses them (a full disk, a failing device) or the engine is closed. Needs <c>AddMiniQueue</c>.
    /// </summary>
    public static IHealthChecksBuilder AddMiniQueue(this IHealthChecksBuilder builder, string name = "miniqueue", IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddCheck<MiniQueueHealthCheck>(name, HealthStatus.Unhealthy, tags ?? []);
    }
}
