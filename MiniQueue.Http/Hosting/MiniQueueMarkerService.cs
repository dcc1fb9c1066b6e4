using Microsoft.Extensions.DependencyInjection;

namespace MiniQueue.Http.Hosting;

/// <summary>Registered by <c>AddMiniQueue</c>, so that <c>UseMiniQueue</c> and <c>MapMiniQueue</c> can tell it was called.</summary>
internal sealed class MiniQueueMarkerService
{
    public static void ThrowIfNotAdded(IServiceProvider services, string caller)
    {
        if (services.GetService<MiniQueueMarkerService>() is null)
        {
            throw new InvalidOperationException(
                $"Unable to find the MiniQueue services needed by {caller}. Call 'services.AddMiniQueue()' (builder.Services.AddMiniQueue(...)) " +
                "in the application's service configuration before calling UseMiniQueue or MapMiniQueue.");
        }
    }
}
