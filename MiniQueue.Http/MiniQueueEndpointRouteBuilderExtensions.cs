using System.Diagnostics.CodeAnalysis;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using MiniQueue.Http;
using MiniQueue.Http.Hosting;
using MiniQueue.Http.Protocol;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Maps MiniQueue's HTTP/2 protocol as endpoints.</summary>
public static class MiniQueueEndpointRouteBuilderExtensions
{
    /// <summary>
    /// Maps MiniQueue's protocol under <paramref name="prefix"/>: <c>POST {prefix}/publish/{topic}</c>,
    /// <c>POST {prefix}/subscribe/{topic}</c> and <c>DELETE {prefix}/{topic}</c> (purge). Without a prefix, purge
    /// (<c>DELETE /{topic}</c>) is mapped only when <see cref="MiniQueueHttpOptions.PurgeAtRoot"/> is set, because it
    /// would claim every one-segment path of the application.
    /// </summary>
    /// <returns>A builder for all the mapped endpoints: <c>.RequireAuthorization()</c>, <c>.RequireHost()</c>,
    /// <c>.RequireRateLimiting()</c>, <c>.RequireCors()</c> and other conventions apply to each of them.</returns>
    /// <exception cref="InvalidOperationException"><c>AddMiniQueue</c> was not called.</exception>
    public static IEndpointConventionBuilder MapMiniQueue(this IEndpointRouteBuilder endpoints, [StringSyntax("Route")] string prefix = "")
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(prefix);
        var services = endpoints.ServiceProvider;
        MiniQueueMarkerService.ThrowIfNotAdded(services, nameof(MapMiniQueue));

        var atRoot = prefix.Trim('/').Length == 0;
        var group = endpoints.MapGroup(atRoot ? "" : prefix.TrimEnd('/'));
        group.MapPost("/publish/{topic}", services.GetRequiredService<PublishHandler>().InvokeAsync)
            .WithDisplayName("MiniQueue publish");
        group.MapPost("/subscribe/{topic}", services.GetRequiredService<SubscribeHandler>().InvokeAsync)
            .WithDisplayName("MiniQueue subscribe")
            .DisableRequestTimeout();
        group.MapPost("/redrive/{topic}", services.GetRequiredService<RedriveHandler>().InvokeAsync)
            .WithDisplayName("MiniQueue redrive");
        if (!atRoot || services.GetRequiredService<IOptions<MiniQueueHttpOptions>>().Value.PurgeAtRoot)
        {
            group.MapDelete("/{topic}", services.GetRequiredService<PurgeHandler>().InvokeAsync)
                .WithDisplayName("MiniQueue purge");
        }

        return group;
    }
}
