using Microsoft.AspNetCore.Http;
using MiniQueue.Http;
using MiniQueue.Http.Hosting;

namespace Microsoft.AspNetCore.Builder;

/// <summary>The middleware form of MiniQueue's HTTP/2 protocol.</summary>
public static class MiniQueueApplicationBuilderExtensions
{
    /// <summary>
    /// Answers MiniQueue's protocol at the root: <c>POST /publish/{topic}</c>, <c>POST /subscribe/{topic}</c>, and
    /// <c>DELETE /{topic}</c> only when <see cref="MiniQueueHttpOptions.PurgeAtRoot"/> is set. Other requests go on
    /// to the next middleware. Prefer <c>MapMiniQueue</c>, whose endpoints take authorization, CORS and rate limiting.
    /// </summary>
    /// <exception cref="InvalidOperationException"><c>AddMiniQueue</c> was not called.</exception>
    public static IApplicationBuilder UseMiniQueue(this IApplicationBuilder app) => app.UseMiniQueue(PathString.Empty);

    /// <summary>
    /// Answers MiniQueue's protocol under <paramref name="prefix"/>: <c>POST {prefix}/publish/{topic}</c>,
    /// <c>POST {prefix}/subscribe/{topic}</c> and <c>DELETE {prefix}/{topic}</c> (at the root only when
    /// <see cref="MiniQueueHttpOptions.PurgeAtRoot"/> is set), with 405 for another method on those paths. Other
    /// requests go on to the next middleware.
    /// </summary>
    /// <exception cref="InvalidOperationException"><c>AddMiniQueue</c> was not called.</exception>
    public static IApplicationBuilder UseMiniQueue(this IApplicationBuilder app, PathString prefix)
    {
        ArgumentNullException.ThrowIfNull(app);
        MiniQueueMarkerService.ThrowIfNotAdded(app.ApplicationServices, nameof(UseMiniQueue));
        return app.UseMiddleware<MiniQueueMiddleware>(prefix);
    }
}
