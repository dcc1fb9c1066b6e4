using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Logging;
using MiniQueue.Http.Authorization;
using MiniQueue.Http.Hosting;

namespace MiniQueue.Http.Protocol;

/// <summary>
/// <c>POST /publish/{topic}</c>: the body is the message. 201 once it is stored; 400 for an invalid topic or a body that
/// cannot be read (a malformed chunked body); 413 when the body is over <see cref="MiniQueueEngine.MaxMessageBytes"/>;
/// 503 when the store cannot take it.
/// </summary>
internal sealed class PublishHandler
{
    private readonly MiniQueueEngineHost _engineHost;
    private readonly TopicAccess _access;
    private readonly ILogger _logger;

    public PublishHandler(MiniQueueEngineHost engineHost, TopicAccess access, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(engineHost);
        ArgumentNullException.ThrowIfNull(access);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _engineHost = engineHost;
        _access = access;
        _logger = loggerFactory.CreateLogger(HttpLog.Category);
    }

    /// <summary>The largest body the fast path takes from the pipe in one read; larger ones stream through the slow path.</summary>
    private const int FastPathBytes = 16 * 1024;

    public Task InvokeAsync(HttpContext context) => TryPublishFast(context) ?? InvokeSlowAsync(context);

    /// <summary>
    /// The common case without an async frame of its own: an open engine, a small body with a Content-Length that arrived
    /// with the headers, valid options or none (the query is read without building the request's Query collection). The
    /// engine is done with the body once PublishAsync returns, so the pipe can move on at once and only the wait for the
    /// commit remains. Null when the request needs the general path.
    /// </summary>
    private Task? TryPublishFast(HttpContext context)
    {
        if (context.Request.ContentLength is not { } length || length > FastPathBytes || _access.Enabled)
        {
            // Per-topic authorization: the general path has it.
            return null;
        }

        PublishOptions? options = null;
        if ((context.Request.QueryString.HasValue || context.Request.Headers.ContainsKey(IdempotencyKeyHeader))
            && TryReadOptions(context.Request, out options) != OptionsError.None)
        {
            // The general path answers 400 (after the topic's own checks).
            return null;
        }

        var opening = _engineHost.GetEngineAsync();
        if (!opening.IsCompletedSuccessfully || TopicRoute.GetTopic(context) is not { } topic)
        {
            return null;
        }

        var engine = opening.Result;
        if (length > engine.MaxMessageBytes)
        {
            return null;
        }

        // Our limit, not the server's, as on the general path.
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } sizeLimit)
        {
            sizeLimit.MaxRequestBodySize = engine.MaxMessageBytes;
        }

        var reader = context.Request.BodyReader;
        if (!reader.TryRead(out var result))
        {
            return null;
        }

        var body = result.Buffer;
        if (!result.IsCompleted || body.Length != length || !body.IsSingleSegment)
        {
            // Not all here yet: the general path reads it (nothing was consumed or examined).
            reader.AdvanceTo(body.Start);
            return null;
        }

        ValueTask publish = default;
        ValueTask<PublishResult> publishWithOptions = default;
        try
        {
            // Not cancelled by the client leaving: once the engine has the message it is published either way.
            if (options is null)
            {
                publish = engine.PublishAsync(topic, body.First, CancellationToken.None);
            }
            else
            {
                publishWithOptions = engine.PublishAsync(topic, body.First, options, CancellationToken.None);
            }
        }
        catch (Exception exception) when (IsRefusal(exception))
        {
            reader.AdvanceTo(body.End);
            return PublishFailedAsync(context, engine, topic, exception);
        }

        reader.AdvanceTo(body.End);
        if (options is not null)
        {
            if (publishWithOptions.IsCompletedSuccessfully)
            {
                Answer(context, publishWithOptions.Result);
                return Task.CompletedTask;
            }

            return AnswerWhenDurableAsync(context, engine, topic, publishWithOptions);
        }

        if (publish.IsCompletedSuccessfully)
        {
            context.Response.StatusCode = StatusCodes.Status201Created;
            return Task.CompletedTask;
        }

        return AnswerWhenDurableAsync(context, engine, topic, publish);
    }

    private async Task AnswerWhenDurableAsync(HttpContext context, MiniQueueEngine engine, string topic, ValueTask<PublishResult> publish)
    {
        PublishResult result;
        try
        {
            result = await publish.ConfigureAwait(false);
        }
        catch (Exception exception) when (IsRefusal(exception))
        {
            await PublishFailedAsync(context, engine, topic, exception).ConfigureAwait(false);
            return;
        }

        Answer(context, result);
    }

    /// <summary>201, saying when the publish repeated an idempotency key (nothing was enqueued).</summary>
    private static void Answer(HttpContext context, PublishResult result)
    {
        if (result.IsDuplicate)
        {
            context.Response.Headers[ReplayedHeader] = "true";
        }

        context.Response.StatusCode = StatusCodes.Status201Created;
    }

    private async Task AnswerWhenDurableAsync(HttpContext context, MiniQueueEngine engine, string topic, ValueTask publish)
    {
        try
        {
            await publish.ConfigureAwait(false);
        }
        catch (Exception exception) when (IsRefusal(exception))
        {
            await PublishFailedAsync(context, engine, topic, exception).ConfigureAwait(false);
            return;
        }

        context.Response.StatusCode = StatusCodes.Status201Created;
    }

    private async Task InvokeSlowAsync(HttpContext context)
    {
        var topic = TopicRoute.GetTopic(context);
        if (topic is null)
        {
            HttpLog.InvalidTopic(_logger, context.Request.Path);
            await ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status400BadRequest, ProtocolErrors.InvalidTopic).ConfigureAwait(false);
            return;
        }

        if (!await _access.AllowAsync(context, topic, MiniQueueOperations.Publish).ConfigureAwait(false))
        {
            return;
        }

        var optionsError = TryReadOptions(context.Request, out var options);
        if (optionsError != OptionsError.None)
        {
            HttpLog.InvalidPublishOption(_logger, topic, optionsError == OptionsError.Delay ? "delay" : IdempotencyKeyHeader);
            var line = optionsError == OptionsError.Delay ? ProtocolErrors.InvalidDelay : ProtocolErrors.InvalidIdempotencyKey;
            await ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status400BadRequest, line).ConfigureAwait(false);
            return;
        }

        MiniQueueEngine engine;
        try
        {
            engine = await _engineHost.GetEngineAsync().ConfigureAwait(false);
        }
        catch (ObjectDisposedException)
        {
            await ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status503ServiceUnavailable, ProtocolErrors.PublishFailed).ConfigureAwait(false);
            return;
        }

        var max = engine.MaxMessageBytes;
        if (context.Request.ContentLength > max)
        {
            await TooLargeAsync(context, topic, max).ConfigureAwait(false);
            return;
        }

        // Our limit, not the server's (Kestrel's default is 30 MB): the body is counted below as it streams in.
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } sizeLimit)
        {
            sizeLimit.MaxRequestBodySize = max;
        }

        var reader = context.Request.BodyReader;
        byte[]? rented = null;
        var length = 0;
        try
        {
            while (true)
            {
                // Reading and consuming the body may fail (a malformed or cut-off body, a client gone): then nothing is
                // published, since the message is published only once its body is complete.
                ReadResult result;
                bool tooLarge;
                try
                {
                    result = await reader.ReadAsync().ConfigureAwait(false);
                    var buffer = result.Buffer;
                    tooLarge = buffer.Length > max - length;
                    if (tooLarge)
                    {
                        // Consumes and examines nothing: Kestrel counts examined bytes against its limit and would throw.
                        reader.AdvanceTo(buffer.Start);
                    }
                    else if (!result.IsCompleted || rented is not null)
                    {
                        // The body goes on: copy it out and consume it, since HTTP/2 flow control only credits consumed bytes.
                        rented = Grow(rented, length, buffer.Length, context.Request.ContentLength, max);
                        buffer.CopyTo(rented.AsSpan(length));
                        length += (int)buffer.Length;
                        reader.AdvanceTo(buffer.End);
                    }
                }
                catch (Exception exception) when (RequestBody.IsReadFailure(exception))
                {
                    await BodyReadFailedAsync(context, topic, max, exception).ConfigureAwait(false);
                    return;
                }

                if (tooLarge)
                {
                    await TooLargeAsync(context, topic, max).ConfigureAwait(false);
                    return;
                }

                if (!result.IsCompleted)
                {
                    continue;
                }

                if (rented is not null)
                {
                    await PublishAsync(context, engine, topic, rented.AsMemory(0, length), options).ConfigureAwait(false);
                    return;
                }

                // The whole body arrived in the pipe (the common case of small messages): publish from it directly.
                // The engine copies what it keeps, and the buffer stays ours until the publish completes.
                var whole = result.Buffer;
                try
                {
                    if (whole.IsSingleSegment)
                    {
                        await PublishAsync(context, engine, topic, whole.First, options).ConfigureAwait(false);
                    }
                    else
                    {
                        rented = ArrayPool<byte>.Shared.Rent((int)whole.Length);
                        whole.CopyTo(rented);
                        await PublishAsync(context, engine, topic, rented.AsMemory(0, (int)whole.Length), options).ConfigureAwait(false);
                    }
                }
                finally
                {
                    reader.AdvanceTo(whole.End);
                }

                return;
            }
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>A rented buffer that holds <paramref name="length"/> bytes (copied from <paramref name="rented"/>) and <paramref name="more"/> more.</summary>
    private static byte[] Grow(byte[]? rented, int length, long more, long? contentLength, int max)
    {
        if (rented is not null && rented.Length >= length + more)
        {
            return rented;
        }

        var capacity = (int)Math.Min(max, Math.Max(length + more, Math.Max(contentLength ?? 0, 2L * (rented?.Length ?? 4096))));
        var grown = ArrayPool<byte>.Shared.Rent(capacity);
        if (rented is not null)
        {
            rented.AsSpan(0, length).CopyTo(grown);
            ArrayPool<byte>.Shared.Return(rented);
        }

        return grown;
    }

    /// <summary>The header that makes a publish idempotent (docs/PROTOCOL.md "Idempotent publish").</summary>
    public const string IdempotencyKeyHeader = "Idempotency-Key";

    /// <summary>The header of the answer to a publish that repeated a key: nothing was enqueued.</summary>
    public const string ReplayedHeader = "Idempotent-Replayed";

    private enum OptionsError
    {
        None,
        Delay,
        IdempotencyKey,
    }

    /// <summary>
    /// Reads the publish options: <c>delay=N</c> in the query, whole seconds from 0 to 2147483647 (docs/PROTOCOL.md
    /// "Delayed publish"; other parameters are ignored, as the original ignored them all), and the
    /// <c>Idempotency-Key</c> header, one value of 1 to 255 bytes (docs/PROTOCOL.md "Idempotent publish").
    /// </summary>
    private static OptionsError TryReadOptions(HttpRequest request, out PublishOptions? options)
    {
        options = null;
        var delay = TimeSpan.Zero;
        if (request.QueryString.Value is { Length: > 1 } query)
        {
            // As the request's Query collection reads it (names without case, values decoded), without building it.
            var delays = 0;
            foreach (var pair in new QueryStringEnumerable(query))
            {
                if (!pair.DecodeName().Span.Equals("delay", StringComparison.OrdinalIgnoreCase))
                {
                    continue;
                }

                if (++delays > 1 || !int.TryParse(pair.DecodeValue().Span, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds))
                {
                    return OptionsError.Delay;
                }

                delay = TimeSpan.FromSeconds(seconds);
            }
        }

        string? key = null;
        if (request.Headers.TryGetValue(IdempotencyKeyHeader, out var keys))
        {
            if (keys.Count != 1 || keys[0] is not { } only || Encoding.UTF8.GetByteCount(only) is < 1 or > PublishOptions.MaxIdempotencyKeyBytes)
            {
                return OptionsError.IdempotencyKey;
            }

            key = only;
        }

        if (delay > TimeSpan.Zero || key is not null)
        {
            options = new PublishOptions { Delay = delay, IdempotencyKey = key };
        }

        return OptionsError.None;
    }

    /// <summary>Publishes for the general path; the caller keeps <paramref name="message"/>'s memory until the task completes.</summary>
    private Task PublishAsync(HttpContext context, MiniQueueEngine engine, string topic, ReadOnlyMemory<byte> message, PublishOptions? options)
    {
        ValueTask<PublishResult> publish;
        try
        {
            // Not cancelled by the client leaving: once the engine has the message it is published either way.
            publish = engine.PublishAsync(topic, message, options, CancellationToken.None);
        }
        catch (Exception exception) when (IsRefusal(exception))
        {
            return PublishFailedAsync(context, engine, topic, exception);
        }

        return AnswerWhenDurableAsync(context, engine, topic, publish);
    }

    /// <summary>How the engine refuses a publish (answered by <see cref="PublishFailedAsync"/>); anything else is a fault.</summary>
    private static bool IsRefusal(Exception exception) =>
        exception is ArgumentException or MiniQueueStoreException or MiniQueueTopicLimitException or ObjectDisposedException;

    /// <summary>Answers a publish the engine refused: 413 for a size the engine would not take, else 503.</summary>
    private Task PublishFailedAsync(HttpContext context, MiniQueueEngine engine, string topic, Exception exception)
    {
        if (exception is ArgumentException)
        {
            // The topic was checked with the engine's own rule, so this is the size (the engine's limit changed?).
            return TooLargeAsync(context, topic, engine.MaxMessageBytes);
        }

        if (exception is MiniQueueTopicLimitException)
        {
            HttpLog.TooManyTopics(_logger, topic);
            return ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status429TooManyRequests, ProtocolErrors.TooManyTopics);
        }

        if (engine.IsDiskLow)
        {
            // Refused for lack of disk space: the engine logged the start of it once; a line per refused publish would
            // flood the log. The client may try again shortly, once consumers have drained.
            HttpLog.PublishRefusedForSpace(_logger, topic);
            context.Response.Headers.RetryAfter = "1";
        }
        else
        {
            HttpLog.PublishFailed(_logger, topic, exception);
        }

        return ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status503ServiceUnavailable, ProtocolErrors.PublishFailed);
    }

    /// <summary>
    /// Answers a publish whose body could not be read: 413 when it went over the limit, else the server's 4xx (400 for a
    /// malformed body). A client that went away hears nothing, which does no harm.
    /// </summary>
    private Task BodyReadFailedAsync(HttpContext context, string topic, int max, Exception exception)
    {
        var status = RequestBody.StatusOf(exception);
        if (status == StatusCodes.Status413PayloadTooLarge)
        {
            return TooLargeAsync(context, topic, max);
        }

        HttpLog.BodyReadFailed(_logger, topic, status, exception);
        return ProtocolErrors.WriteResponseAsync(context, status, ProtocolErrors.InvalidBody);
    }

    private Task TooLargeAsync(HttpContext context, string topic, int max)
    {
        HttpLog.MessageTooLarge(_logger, topic, max);
        return ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status413PayloadTooLarge, ProtocolErrors.MessageTooLarge);
    }
}
