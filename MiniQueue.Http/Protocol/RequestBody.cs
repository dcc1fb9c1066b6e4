using System.IO.Pipelines;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace MiniQueue.Http.Protocol;

/// <summary>
/// Reading a request body that may fail: a malformed body (an HTTP/1.1 chunk size that is not hex, overflows, or
/// framing without its CRLF), a body cut off by the client, or a client that went away.
/// </summary>
internal static class RequestBody
{
    /// <summary>
    /// Whether <paramref name="exception"/>, thrown by a read of the request body, means that the body could not be
    /// read. Kestrel throws <see cref="BadHttpRequestException"/> (an <see cref="IOException"/>) for most malformed
    /// bodies, but a plain <see cref="IOException"/> for a chunk size that overflows, and an
    /// <see cref="OperationCanceledException"/> when the request was aborted.
    /// </summary>
    public static bool IsReadFailure(Exception exception) => exception is IOException or OperationCanceledException;

    /// <summary>The status that answers a body that could not be read: the server's own 4xx when it gave one, else 400.</summary>
    public static int StatusOf(Exception exception) =>
        exception is BadHttpRequestException { StatusCode: >= 400 and < 500 } bad ? bad.StatusCode : StatusCodes.Status400BadRequest;

    /// <summary>
    /// For the requests whose body is not used (purge, redrive): the topic of the route, once the body was read to its end
    /// and discarded. Null when the request was answered already: 400 for an invalid topic, or the status of a body
    /// that could not be read (a request whose body cannot be read is not one to act on).
    /// </summary>
    public static async Task<string?> TopicOfBodilessRequestAsync(HttpContext context, ILogger logger)
    {
        var topic = TopicRoute.GetTopic(context);
        if (topic is null)
        {
            HttpLog.InvalidTopic(logger, context.Request.Path);
            await ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status400BadRequest, ProtocolErrors.InvalidTopic).ConfigureAwait(false);
            return null;
        }

        try
        {
            await DrainAsync(context.Request.BodyReader).ConfigureAwait(false);
        }
        catch (Exception exception) when (IsReadFailure(exception))
        {
            var status = StatusOf(exception);
            HttpLog.BodyReadFailed(logger, topic, status, exception);
            await ProtocolErrors.WriteResponseAsync(context, status, ProtocolErrors.InvalidBody).ConfigureAwait(false);
            return null;
        }

        return topic;
    }

    /// <summary>Reads the body to its end and discards it; throws what the read throws.</summary>
    public static async Task DrainAsync(PipeReader reader)
    {
        while (true)
        {
            var result = await reader.ReadAsync().ConfigureAwait(false);
            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return;
            }
        }
    }
}
