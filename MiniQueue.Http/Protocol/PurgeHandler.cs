using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using MiniQueue.Http.Hosting;

namespace MiniQueue.Http.Protocol;

/// <summary>
/// <c>DELETE /{topic}</c>: discards the topic's ready and delayed messages; 200 with an empty body. A body, if any, is
/// read and ignored; one that cannot be read is 400 and nothing is purged.
/// </summary>
internal sealed class PurgeHandler
{
    private readonly MiniQueueEngineHost _engineHost;
    private readonly ILogger _logger;

    public PurgeHandler(MiniQueueEngineHost engineHost, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(engineHost);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _engineHost = engineHost;
        _logger = loggerFactory.CreateLogger(HttpLog.Category);
    }

    public async Task InvokeAsync(HttpContext context)
    {
        var topic = TopicRoute.GetTopic(context);
        if (topic is null)
        {
            HttpLog.InvalidTopic(_logger, context.Request.Path);
            await ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status400BadRequest, ProtocolErrors.InvalidTopic).ConfigureAwait(false);
            return;
        }

        // A purge has no use for a body, but a request whose body cannot be read (a malformed chunked body) is not a
        // request to act on: it is refused before anything is purged.
        try
        {
            await RequestBody.DrainAsync(context.Request.BodyReader).ConfigureAwait(false);
        }
        catch (Exception exception) when (RequestBody.IsReadFailure(exception))
        {
            var status = RequestBody.StatusOf(exception);
            HttpLog.BodyReadFailed(_logger, topic, status, exception);
            await ProtocolErrors.WriteResponseAsync(context, status, ProtocolErrors.InvalidBody).ConfigureAwait(false);
            return;
        }

        try
        {
            var engine = await _engineHost.GetEngineAsync().ConfigureAwait(false);
            await engine.PurgeAsync(topic, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is MiniQueueStoreException or ObjectDisposedException)
        {
            HttpLog.PurgeFailed(_logger, topic, exception);
            await ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status503ServiceUnavailable, ProtocolErrors.PurgeFailed).ConfigureAwait(false);
            return;
        }

        context.Response.StatusCode = StatusCodes.Status200OK;
    }
}
