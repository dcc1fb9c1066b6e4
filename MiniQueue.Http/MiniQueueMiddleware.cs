using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;
using MiniQueue.Http.Protocol;

namespace MiniQueue.Http;

/// <summary>
/// The middleware form of the protocol (<c>UseMiniQueue</c>): it answers <c>{prefix}/publish/{topic}</c>,
/// <c>{prefix}/subscribe/{topic}</c> and, under a prefix or when <see cref="MiniQueueHttpOptions.PurgeAtRoot"/> is set,
/// <c>{prefix}/{topic}</c>, with 405 for a wrong method on those paths; every other request goes to the next middleware.
/// </summary>
internal sealed class MiniQueueMiddleware
{
    private readonly RequestDelegate _next;
    private readonly PathString _prefix;
    private readonly bool _servesPurge;
    private readonly RequestDelegate _publish;
    private readonly RequestDelegate _subscribe;
    private readonly RequestDelegate _purge;
    private readonly RequestDelegate _redrive;

    public MiniQueueMiddleware(
        RequestDelegate next,
        PathString prefix,
        IOptions<MiniQueueHttpOptions> options,
        PublishHandler publish,
        SubscribeHandler subscribe,
        PurgeHandler purge,
        RedriveHandler redrive)
    {
        ArgumentNullException.ThrowIfNull(next);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(publish);
        ArgumentNullException.ThrowIfNull(subscribe);
        ArgumentNullException.ThrowIfNull(purge);
        ArgumentNullException.ThrowIfNull(redrive);
        _next = next;
        _prefix = prefix.Value?.TrimEnd('/') is { Length: > 0 } trimmed ? new PathString(trimmed) : PathString.Empty;
        _servesPurge = _prefix.HasValue || options.Value.PurgeAtRoot;
        _publish = publish.InvokeAsync;
        _subscribe = subscribe.InvokeAsync;
        _purge = purge.InvokeAsync;
        _redrive = redrive.InvokeAsync;
    }

    public Task InvokeAsync(HttpContext context)
    {
        if (!context.Request.Path.StartsWithSegments(_prefix, out var rest) || rest.Value is not { Length: > 1 } path)
        {
            return _next(context);
        }

        // path is "/x" (purge) or "/publish/x", "/subscribe/x", "/redrive/x".
        var span = path.AsSpan(1);
        var slash = span.IndexOf('/');
        RequestDelegate handler;
        string method;
        if (slash < 0)
        {
            if (!_servesPurge)
            {
                return _next(context);
            }

            (handler, method) = (_purge, HttpMethods.Delete);
        }
        else
        {
            var topic = span[(slash + 1)..];
            if (topic.IsEmpty || topic.Contains('/'))
            {
                return _next(context);
            }

            var route = span[..slash];
            if (route.SequenceEqual("publish"))
            {
                (handler, method) = (_publish, HttpMethods.Post);
            }
            else if (route.SequenceEqual("subscribe"))
            {
                (handler, method) = (_subscribe, HttpMethods.Post);
            }
            else if (route.SequenceEqual("redrive"))
            {
                (handler, method) = (_redrive, HttpMethods.Post);
            }
            else
            {
                return _next(context);
            }
        }

        if (!HttpMethods.Equals(context.Request.Method, method))
        {
            context.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
            context.Response.Headers.Allow = method;
            return Task.CompletedTask;
        }

        return handler(context);
    }
}
