using Microsoft.Extensions.Configuration;
using MiniQueue;
using MiniQueue.PostgreSql;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Shared mode for an application that keeps MiniQueue in its services (<c>AddMiniQueue</c>).</summary>
public static class MiniQueuePostgreSqlServiceCollectionExtensions
{
    /// <summary>The configuration key of the connection string when none is given: <c>MiniQueue:PostgreSql</c>.</summary>
    public const string ConnectionStringKey = "MiniQueue:PostgreSql";

    /// <summary>
    /// Makes the engine of <c>AddMiniQueue</c> open in shared mode: its queue lives in the PostgreSQL database that
    /// <paramref name="connectionString"/> names (an Npgsql connection string), or, when it is null, the configuration's
    /// <c>MiniQueue:PostgreSql</c> (<see cref="ConnectionStringKey"/>). Every replica of the application opened on that
    /// database serves one queue. The options bound from the <c>MiniQueue</c> section apply as in
    /// <see cref="MiniQueuePostgreSql.OpenAsync(string, MiniQueueOptions?, CancellationToken)"/>.
    /// </summary>
    /// <remarks>Without a connection string in either place, the engine fails to open (the host does not start) with an error that says so.</remarks>
    public static IServiceCollection AddMiniQueuePostgreSql(this IServiceCollection services, string? connectionString = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        if (connectionString is not null)
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        }

        for (var i = services.Count - 1; i >= 0; i--)
        {
            if (services[i].ServiceType == typeof(MiniQueueEngineOpener))
            {
                services.RemoveAt(i);
            }
        }

        services.AddSingleton(new MiniQueueEngineOpener((provider, options, cancellationToken) =>
        {
            var configured = connectionString
                ?? (provider.GetService(typeof(IConfiguration)) as IConfiguration)?[ConnectionStringKey];
            return string.IsNullOrWhiteSpace(configured)
                ? ValueTask.FromException<MiniQueueEngine>(new InvalidOperationException(
                    $"Shared mode (AddMiniQueuePostgreSql) needs a connection string: give one, or set the configuration key '{ConnectionStringKey}'."))
                : MiniQueuePostgreSql.OpenAsync(configured, options, cancellationToken);
        }));
        return services;
    }
}
