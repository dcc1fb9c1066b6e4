using System.Collections.Concurrent;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.Timeouts;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MiniQueue.Http.Authorization;
using MiniQueue.Http.Hosting;

namespace MiniQueue.Http.Protocol;

/// <summary>
/// <c>POST /subscribe/{topic}</c>: the consumer stream. Commands come in as JSON strings in the request body and are
/// handled strictly in order; messages and errors go out as one JSON object per line, each flushed. A command that
/// leads to a delivery finishes only when the delivery has happened; the end of the request body is handled in the
/// same order, like a last command; RST_STREAM, connection loss and the application stopping end the stream at once.
/// However the stream ends, the consumer is disposed, so the message it held returns to the front of its topic.
/// </summary>
internal sealed class SubscribeHandler
{
    private readonly MiniQueueEngineHost _engineHost;
    private readonly IHostApplicationLifetime? _lifetime;
    private readonly TopicAccess _access;
    private readonly IOptions<MiniQueueHttpOptions> _options;
    private readonly ConcurrentDictionary<string, int> _streams = new(StringComparer.Ordinal);
    private readonly ILogger _logger;

    public SubscribeHandler(
        MiniQueueEngineHost engineHost, TopicAccess access, IOptions<MiniQueueHttpOptions> options, ILoggerFactory loggerFactory, IHostApplicationLifetime? lifetime = null)
    {
        ArgumentNullException.ThrowIfNull(engineHost);
        ArgumentNullException.ThrowIfNull(access);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _engineHost = engineHost;
        _access = access;
        _options = options;
        _lifetime = lifetime;
        _logger = loggerFactory.CreateLogger(HttpLog.Category);
    }

    public async Task InvokeAsync(HttpContext context)
    {
        var request = context.Request;
        if (!HttpProtocol.IsHttp2(request.Protocol) && !HttpProtocol.IsHttp3(request.Protocol))
        {
            // HTTP/1.1 cannot be relied on for a full-duplex body (proxies and clients buffer it): docs/PROTOCOL.md
            // ("Transport") allows HTTP/1.1 for publish and purge only.
            HttpLog.SubscribeNeedsHttp2(_logger, request.Protocol);
            await ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status505HttpVersionNotsupported, ProtocolErrors.SubscribeNeedsHttp2).ConfigureAwait(false);
            return;
        }

        var topic = TopicRoute.GetTopic(context);
        if (topic is null)
        {
            HttpLog.InvalidTopic(_logger, request.Path);
            await ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status400BadRequest, ProtocolErrors.InvalidTopic).ConfigureAwait(false);
            return;
        }

        if (!await _access.AllowAsync(context, topic, MiniQueueOperations.Subscribe).ConfigureAwait(false))
        {
            return;
        }

        if (!EnterTopic(topic))
        {
            HttpLog.TooManyConsumers(_logger, topic, _options.Value.MaxConsumersPerTopic ?? 0);
            await ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status429TooManyRequests, ProtocolErrors.TooManyConsumers).ConfigureAwait(false);
            return;
        }

        MiniQueueConsumer consumer;
        try
        {
            var engine = await _engineHost.GetEngineAsync().ConfigureAwait(false);
            consumer = engine.Subscribe(topic);
        }
        catch (ObjectDisposedException)
        {
            LeaveTopic(topic);
            await ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status503ServiceUnavailable, ProtocolErrors.ShuttingDown).ConfigureAwait(false);
            return;
        }

        try
        {
            PrepareLongLivedStream(context);
            var response = context.Response;
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = "text/plain; charset=utf-8";

            using var stop = _lifetime is null
                ? CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted)
                : CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _lifetime.ApplicationStopping);
            HttpLog.Subscribed(_logger, topic);
            var reason = await RunAsync(consumer, request.BodyReader, response, stop.Token).ConfigureAwait(false);
            HttpLog.SubscriptionEnded(_logger, topic, reason);
        }
        catch (BadHttpRequestException exception)
        {
            // The command stream cannot be read (the client broke HTTP/2's framing rules): the status went out long
            // ago, so the stream is reset rather than ended as if all were well.
            HttpLog.BodyReadFailed(_logger, topic, exception.StatusCode, exception);
            context.Abort();
        }
        catch (Exception exception) when (exception is OperationCanceledException or IOException)
        {
            // RST_STREAM, connection loss, or the application stopping.
            HttpLog.SubscriptionEnded(_logger, topic, context.RequestAborted.IsCancellationRequested ? "the client went away" : "the server is stopping");
        }
        catch (ObjectDisposedException)
        {
            HttpLog.SubscriptionEnded(_logger, topic, "the engine closed");
        }
        catch (Exception exception)
        {
            // Not expected; the message still returns below, and the stream is reset rather than ended cleanly.
            HttpLog.SubscriptionFailed(_logger, topic, exception);
            context.Abort();
        }
        finally
        {
            await consumer.DisposeAsync().ConfigureAwait(false);
            LeaveTopic(topic);
        }
    }

    /// <summary>
    /// Counts a new stream of <paramref name="topic"/>; false (and not counted) when the topic has
    /// <see cref="MiniQueueHttpOptions.MaxConsumersPerTopic"/> streams already.
    /// </summary>
    private bool EnterTopic(string topic)
    {
        if (_options.Value.MaxConsumersPerTopic is not { } max)
        {
            return true;
        }

        var count = _streams.AddOrUpdate(topic, 1, static (_, count) => count + 1);
        if (count <= max)
        {
            return true;
        }

        LeaveTopic(topic);
        return false;
    }

    /// <summary>A stream of <paramref name="topic"/> that <see cref="EnterTopic"/> counted ended.</summary>
    private void LeaveTopic(string topic)
    {
        if (_options.Value.MaxConsumersPerTopic is null)
        {
            return;
        }

        _streams.AddOrUpdate(topic, 0, static (_, count) => count - 1);
        _streams.TryRemove(new KeyValuePair<string, int>(topic, 0));
    }

    /// <summary>Lifts the server limits that would cut a long-lived stream: body data rate, body size, request timeout.</summary>
    private static void PrepareLongLivedStream(HttpContext context)
    {
        var features = context.Features;
        if (features.Get<IHttpMinRequestBodyDataRateFeature>() is { } dataRate)
        {
            dataRate.MinDataRate = null;
        }

        if (features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } sizeLimit)
        {
            sizeLimit.MaxRequestBodySize = null;
        }

        features.Get<IHttpRequestTimeoutFeature>()?.DisableTimeout();
        features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
    }

    /// <summary>Runs the stream until it ends; returns why, for the log.</summary>
    private async Task<string> RunAsync(MiniQueueConsumer consumer, PipeReader body, HttpResponse response, CancellationToken cancellationToken)
    {
        var output = response.BodyWriter;
        // Headers go out at once, before the first message (the Go program held them back). A flush of an empty
        // body alone does not send them in Kestrel's HTTP/2; starting the response does.
        await response.StartAsync(cancellationToken).ConfigureAwait(false);
        if ((await output.FlushAsync(cancellationToken).ConfigureAwait(false)).IsCompleted)
        {
            return "the client stopped reading";
        }

        var commands = new CommandReader(body);
        var lease = new LeaseWatch(body);
        while (true)
        {
            // A lease that passed is told before the next command is handled (docs/PROTOCOL.md "Leases").
            if (lease.TakeLapse())
            {
                MessageWriter.WriteLine(output, ProtocolErrors.LineOf(StreamError.LeaseExpired));
                if ((await output.FlushAsync(cancellationToken).ConfigureAwait(false)).IsCompleted)
                {
                    return "the client stopped reading";
                }
            }

            var command = await commands.ReadAsync(cancellationToken).ConfigureAwait(false);
            if (command.Kind == CommandKind.End)
            {
                return "the request body ended";
            }

            if (command.Kind == CommandKind.Interrupted)
            {
                continue;
            }

            var error = await ApplyAsync(consumer, command).ConfigureAwait(false);
            if (error != StreamError.None)
            {
                HttpLog.BadCommand(_logger, consumer.Topic, command.Kind);
                MessageWriter.WriteLine(output, ProtocolErrors.LineOf(error));
                if ((await output.FlushAsync(cancellationToken).ConfigureAwait(false)).IsCompleted)
                {
                    return "the client stopped reading";
                }

                if (ProtocolErrors.ClosesStream(error))
                {
                    return "a command that closes the stream";
                }

                continue;
            }

            if (command.Kind == CommandKind.Touch)
            {
                // A renewed lease is not answered: the consumer still holds its message.
                continue;
            }

            // The previous delivery's lease is no longer watched; if it passed meanwhile, that is told first.
            await lease.StopAsync().ConfigureAwait(false);
            if (lease.TakeLapse())
            {
                MessageWriter.WriteLine(output, ProtocolErrors.LineOf(StreamError.LeaseExpired));
            }

            // The command leads to a delivery, and is finished only when it has happened.
            Delivery delivery;
            try
            {
                delivery = await consumer.ReceiveAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (MiniQueueStoreException exception)
            {
                HttpLog.ReceiveFailed(_logger, consumer.Topic, exception);
                MessageWriter.WriteLine(output, ProtocolErrors.LineOf(StreamError.NextValue));
                await output.FlushAsync(cancellationToken).ConfigureAwait(false);
                return "the store could not read the next message";
            }

            lease.Watch(delivery.LeaseExpired);
            MessageWriter.WriteMessage(output, delivery.Payload.Span, delivery.DackCount);
            if ((await output.FlushAsync(cancellationToken).ConfigureAwait(false)).IsCompleted)
            {
                return "the client stopped reading";
            }
        }
    }

    /// <summary>
    /// Applies a command to the consumer; <see cref="StreamError.None"/> when a delivery is to follow (or, for TOUCH,
    /// when the lease was renewed).
    /// </summary>
    private static async ValueTask<StreamError> ApplyAsync(MiniQueueConsumer consumer, Command command)
    {
        switch (command.Kind)
        {
            case CommandKind.Init:
                return consumer.IsHoldingMessage ? StreamError.NextValue : StreamError.None;
            case CommandKind.Ack:
                return await SettleAsync(consumer, static (c, _) => c.AckAsync(), 0, StreamError.Ack).ConfigureAwait(false);
            case CommandKind.Nack:
                return await SettleAsync(consumer, static (c, _) => c.NackAsync(), 0, StreamError.Nack).ConfigureAwait(false);
            case CommandKind.Back:
                return await SettleAsync(consumer, static (c, _) => c.BackAsync(), 0, StreamError.Back).ConfigureAwait(false);
            case CommandKind.Dack:
                return await SettleAsync(consumer, static (c, seconds) => c.DackAsync(TimeSpan.FromSeconds(seconds)), command.DackSeconds, StreamError.Dack)
                    .ConfigureAwait(false);
            case CommandKind.Touch:
                return await SettleAsync(consumer, static (c, _) => c.TouchAsync(), 0, StreamError.Touch).ConfigureAwait(false);
            case CommandKind.Unrecognised:
                return StreamError.Unrecognised;
            case CommandKind.DackTooFewArguments:
                return StreamError.DackTooFewArguments;
            case CommandKind.DackInvalidArgument:
                return StreamError.DackInvalidArgument;
            default:
                return StreamError.DecodingCommand;
        }
    }

    /// <summary>
    /// Settles (or touches) the held message; <paramref name="error"/> when the consumer holds none, also when its lease
    /// passed between the check and the settlement.
    /// </summary>
    private static async ValueTask<StreamError> SettleAsync(
        MiniQueueConsumer consumer, Func<MiniQueueConsumer, int, ValueTask> settle, int argument, StreamError error)
    {
        if (!consumer.IsHoldingMessage)
        {
            return error;
        }

        try
        {
            await settle(consumer, argument).ConfigureAwait(false);
        }
        catch (InvalidOperationException) when (!consumer.IsHoldingMessage)
        {
            return error;
        }

        return StreamError.None;
    }

    /// <summary>
    /// Watches the lease on the stream's current delivery: when it passes, the pending read of commands is interrupted so
    /// that the stream can say so at once (<c>{"error":"lease expired"}</c>).
    /// </summary>
    private sealed class LeaseWatch(PipeReader commands)
    {
        private static readonly Action<object?> s_onLapse = static state => ((LeaseWatch)state!).OnLapse();

        private CancellationTokenRegistration _registration;
        private int _lapsed;

        public void Watch(CancellationToken lease)
        {
            if (lease.CanBeCanceled)
            {
                _registration = lease.UnsafeRegister(s_onLapse, this);
            }
        }

        /// <summary>Stops watching; once this completes, a lapse that was being signalled has been noted.</summary>
        public ValueTask StopAsync()
        {
            var registration = _registration;
            _registration = default;
            return registration.DisposeAsync();
        }

        /// <summary>Whether the watched lease passed since the last call.</summary>
        public bool TakeLapse() => Interlocked.Exchange(ref _lapsed, 0) != 0;

        private void OnLapse()
        {
            Volatile.Write(ref _lapsed, 1);
            try
            {
                commands.CancelPendingRead();
            }
            catch (Exception exception) when (exception is ObjectDisposedException or InvalidOperationException)
            {
                // The stream ended meanwhile; there is nobody left to tell.
            }
        }
    }
}
