using System.Globalization;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using MiniQueue.Http.Authorization;
using MiniQueue.Http.Hosting;

namespace MiniQueue.Http.Protocol;

/// <summary>
/// <c>POST /redrive/{topic}</c> (an extension, docs/PROTOCOL.md "Dead letters"): moves every message of the topic's
/// dead-letter topic that no consumer holds back to the end of the topic; 200 with <c>{"moved":N}</c>. A body, if any,
/// is read and ignored; one that cannot be read is 400 and nothing moves.
/// </summary>
internal sealed class RedriveHandler
{
    private readonly MiniQueueEngineHost _engineHost;
    private readonly TopicAccess _access;
    private readonly ILogger _logger;

    public RedriveHandler(MiniQueueEngineHost engineHost, TopicAccess access, ILoggerFactory loggerFactory)
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
            || !await _access.AllowAsync(context, topic, MiniQueueOperations.Redrive).ConfigureAwait(false))
        {
            return;
        }

        int moved;
        try
        {
            var engine = await _engineHost.GetEngineAsync().ConfigureAwait(false);
            moved = await engine.RedriveAsync(topic, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is MiniQueueStoreException or ObjectDisposedException)
        {
            HttpLog.RedriveFailed(_logger, topic, exception);
            await ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status503ServiceUnavailable, ProtocolErrors.RedriveFailed).ConfigureAwait(false);
            return;
        }

        var body = string.Create(CultureInfo.InvariantCulture, $"{{\"moved\":{moved}}}\n");
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.ContentLength = body.Length;
        await context.Response.WriteAsync(body).ConfigureAwait(false);
    }
}
