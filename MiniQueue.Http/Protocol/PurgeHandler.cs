using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using MiniQueue.Http.Authorization;
using MiniQueue.Http.Hosting;

namespace MiniQueue.Http.Protocol;

/// <summary>
/// <c>DELETE /{topic}</c>: discards the topic's ready and delayed messages; 200 with an empty body. A body, if any, is
/// read and ignored; one that cannot be read is 400 and nothing is purged.
/// </summary>
internal sealed class PurgeHandler
{
    private readonly MiniQueueEngineHost _engineHost;
    private readonly TopicAccess _access;
    private readonly ILogger _logger;

    public PurgeHandler(MiniQueueEngineHost engineHost, TopicAccess access, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(engineHost);
        ArgumentNullException.ThrowIfNull(access);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _engineHost = engineHost;
        _access = access;
        _logger = loggerFactory.CreateLogger(HttpLog.Category);
    }

    public async Task InvokeAsync(HttpContext context)
    {
        if (await RequestBody.TopicOfBodilessRequestAsync(context, _logger).ConfigureAwait(false) is not { } topic
            || !await _access.AllowAsync(context, topic, MiniQueueOperations.Purge).ConfigureAwait(false))
        {
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
