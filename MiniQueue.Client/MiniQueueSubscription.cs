using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Text;
using System.Text.Json;

namespace MiniQueue.Client;

/// <summary>
/// A consumer stream on one topic. It holds at most one message: <see cref="ReceiveAsync"/> gets the next one, and
/// <see cref="AckAsync"/>, <see cref="NackAsync"/>, <see cref="BackAsync"/> or <see cref="DackAsync"/> settles it.
/// Disposing ends the stream; the server returns the held message to the front of the topic.
/// </summary>
/// <remarks>
/// A subscription is for one caller at a time. Settling only sends the command (the protocol has no reply to it); the
/// server then delivers the next message, which the next <see cref="ReceiveAsync"/> reads. Cancelling a
/// <see cref="ReceiveAsync"/> stops waiting but loses nothing: the subscription stays usable and a later
/// <see cref="ReceiveAsync"/> returns the message the server delivers.
/// </remarks>
public sealed class MiniQueueSubscription : IAsyncDisposable
{
    /// <summary>The longest line the client reads: a 64 MiB message, base64-encoded, and more.</summary>
    private const long MaxLineBytes = 96L * 1024 * 1024;

    private static readonly byte[] s_init = Encoding.UTF8.GetBytes("\"INIT\"\n");
    private static readonly byte[] s_ack = Encoding.UTF8.GetBytes("\"ACK\"\n");
    private static readonly byte[] s_nack = Encoding.UTF8.GetBytes("\"NACK\"\n");
    private static readonly byte[] s_back = Encoding.UTF8.GetBytes("\"BACK\"\n");
    private static readonly byte[] s_touch = Encoding.UTF8.GetBytes("\"TOUCH\"\n");
    private static readonly TimeSpan s_closeGrace = TimeSpan.FromMilliseconds(250);

    private readonly HttpRequestMessage _request;
    private readonly HttpResponseMessage _response;
    private readonly CommandStreamContent _content;
    private readonly Stream _commands;
    private readonly PipeReader _lines;
    private Task<ReadResult>? _pendingRead;
    private bool _isHolding;
    private bool _isDeliveryRequested;
    private bool _isEnded;
    private bool _isDisposed;

    /// <summary>The server said the lease on the held message passed; the answers to the commands sent since are errors.</summary>
    private bool _afterLapse;

    internal MiniQueueSubscription(
        string topic, HttpRequestMessage request, HttpResponseMessage response, CommandStreamContent content, Stream commands, Stream lines)
    {
        Topic = topic;
        _request = request;
        _response = response;
        _content = content;
        _commands = commands;
        _lines = PipeReader.Create(lines, new StreamPipeReaderOptions(bufferSize: 16 * 1024, minimumReadSize: 4 * 1024));
    }

    /// <summary>The topic this subscription consumes.</summary>
    public string Topic { get; }

    /// <summary>Whether the subscription holds a message it has not settled.</summary>
    public bool IsHoldingMessage => _isHolding;

    /// <summary>
    /// How many times the lease on a message this subscription held passed before its settle reached the server (on a
    /// topic with a lease; see the server's <c>-lease</c>): the server returned the message to the front of the topic,
    /// and the settle did nothing. <see cref="ReceiveAsync"/> goes on with the next message.
    /// </summary>
    public int ExpiredLeases { get; private set; }

    /// <summary>
    /// Waits for the next message and holds it. The first call starts consuming (<c>INIT</c>); after a settle, the
    /// server is already delivering the next message.
    /// </summary>
    /// <exception cref="InvalidOperationException">The subscription already holds a message.</exception>
    /// <exception cref="MiniQueueClientException">The server sent an error, or ended the stream.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled; nothing is lost.</exception>
    public async ValueTask<MiniQueueMessage> ReceiveAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        if (_isHolding)
        {
            throw new InvalidOperationException("The subscription already holds a message; settle it (ACK, NACK, BACK or DACK) before receiving the next.");
        }

        if (!_isDeliveryRequested)
        {
            await SendAsync(s_init, cancellationToken).ConfigureAwait(false);
            _isDeliveryRequested = true;
        }

        while (true)
        {
            var result = await ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var newline = buffer.PositionOf((byte)'\n');
            if (newline is null)
            {
                if (result.IsCompleted)
                {
                    _lines.AdvanceTo(buffer.End);
                    _isEnded = true;
                    throw new MiniQueueClientException($"The server ended the consumer stream of topic '{Topic}'.");
                }

                if (buffer.Length > MaxLineBytes)
                {
                    _isEnded = true;
                    throw new MiniQueueClientException($"The server sent a line of over {MaxLineBytes} bytes on the consumer stream of topic '{Topic}'.");
                }

                _lines.AdvanceTo(buffer.Start, buffer.End);
                continue;
            }

            var line = buffer.Slice(0, newline.Value);
            string? error;
            MiniQueueMessage message;
            try
            {
                (message, error) = ParseLine(line);
            }
            finally
            {
                _lines.AdvanceTo(buffer.GetPosition(1, newline.Value));
            }

            if (error is not null && await AbsorbLapseAsync(error).ConfigureAwait(false))
            {
                continue;
            }

            if (error is not null)
            {
                // Errors keep or close the stream as the protocol says; a closed one shows as the end of the stream.
                _isDeliveryRequested = false;
                throw new MiniQueueClientException($"The server sent an error on the consumer stream of topic '{Topic}': {error}", null, error);
            }

            _isDeliveryRequested = false;
            _isHolding = true;
            return message;
        }
    }

    /// <summary>Done: the server removes the held message for good, then delivers the next.</summary>
    /// <exception cref="InvalidOperationException">The subscription holds no message.</exception>
    public ValueTask AckAsync(CancellationToken cancellationToken = default) => SettleAsync(s_ack, "ACK", cancellationToken);

    /// <summary>Returns the held message to the front of the topic (a waiting consumer gets it at once).</summary>
    /// <exception cref="InvalidOperationException">The subscription holds no message.</exception>
    public ValueTask NackAsync(CancellationToken cancellationToken = default) => SettleAsync(s_nack, "NACK", cancellationToken);

    /// <summary>Returns the held message to the back of the topic.</summary>
    /// <exception cref="InvalidOperationException">The subscription holds no message.</exception>
    public ValueTask BackAsync(CancellationToken cancellationToken = default) => SettleAsync(s_back, "BACK", cancellationToken);

    /// <summary>
    /// Renews the lease on the held message (on a topic with a lease; see the server's <c>-lease</c>), so that it stays
    /// held for another full lease. The server does not answer it.
    /// </summary>
    /// <exception cref="InvalidOperationException">The subscription holds no message.</exception>
    public ValueTask TouchAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfUnusable();
        if (!_isHolding)
        {
            throw new InvalidOperationException("The subscription holds no message to TOUCH.");
        }

        return SendAsync(s_touch, cancellationToken);
    }

    /// <summary>
    /// Takes in the lines a passed lease causes: <c>lease expired</c> itself, then the errors that answer the commands
    /// sent after it (TOUCHes, and the settle, which did nothing). After the settle's error the next message is asked
    /// for again. True when <paramref name="error"/> was such a line.
    /// </summary>
    private async ValueTask<bool> AbsorbLapseAsync(string error)
    {
        if (error == "lease expired")
        {
            _afterLapse = true;
            ExpiredLeases++;
            return true;
        }

        if (!_afterLapse)
        {
            return false;
        }

        if (error == "error TOUCHing message")
        {
            return true;
        }

        if (error is "error ACKing message" or "error NACKing message" or "error BACKing message" or "error DACKing message")
        {
            // Not cancellable: the settle's delivery was asked for, and the INIT stands in for it.
            _afterLapse = false;
            await SendAsync(s_init, CancellationToken.None).ConfigureAwait(false);
            return true;
        }

        return false;
    }

    /// <summary>
    /// Delays the held message; its dackCount goes up by one. The protocol counts whole seconds: the delay is
    /// rounded <b>up</b> to a whole number of seconds (so a message never comes back earlier than asked), and a
    /// delay of zero or less makes it due at once.
    /// </summary>
    /// <exception cref="InvalidOperationException">The subscription holds no message.</exception>
    public ValueTask DackAsync(TimeSpan delay, CancellationToken cancellationToken = default) =>
        SettleAsync(Encoding.UTF8.GetBytes($"\"DACK {ToWholeSeconds(delay).ToString(CultureInfo.InvariantCulture)}\"\n"), "DACK", cancellationToken);

    /// <summary>
    /// Ends the consumer stream. The request body is closed first, after the commands already sent; the server handles
    /// that end in order (after a delivery it is waiting for) and then ends its response. Whatever the server has not
    /// ended within a quarter of a second is reset (RST_STREAM), so a command sent just before, such as an ACK, has
    /// that long to be read; either way the server returns the message the subscription held to the front of the topic.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (_isDisposed)
        {
            return;
        }

        _isDisposed = true;
        _content.Complete();
        if (!_isEnded)
        {
            var draining = DrainResponseAsync();
            try
            {
                await draining.WaitAsync(s_closeGrace).ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is TimeoutException or IOException or HttpRequestException or ObjectDisposedException or OperationCanceledException)
            {
                // The reset below ends a drain still waiting; its failure is expected and observed here.
                _ = draining.ContinueWith(static read => _ = read.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
            }
        }

        _response.Dispose();
        _request.Dispose();
    }

    /// <summary>Reads the response to its end, discarding a message the server sent after the last receive.</summary>
    private async Task DrainResponseAsync()
    {
        while (true)
        {
            var read = _pendingRead ?? _lines.ReadAsync(CancellationToken.None).AsTask();
            _pendingRead = null;
            var result = await read.ConfigureAwait(false);
            _lines.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                return;
            }
        }
    }

    internal static int ToWholeSeconds(TimeSpan delay) =>
        delay <= TimeSpan.Zero ? 0 : (int)Math.Min(int.MaxValue, Math.Ceiling(delay.Ticks / (double)TimeSpan.TicksPerSecond));

    private async ValueTask SettleAsync(byte[] command, string name, CancellationToken cancellationToken)
    {
        ThrowIfUnusable();
        if (!_isHolding)
        {
            throw new InvalidOperationException($"The subscription holds no message to {name}.");
        }

        await SendAsync(command, cancellationToken).ConfigureAwait(false);
        _isHolding = false;
        _isDeliveryRequested = true;
    }

    /// <summary>
    /// Sends a command. The caller's token is checked before, not handed to the stream: cancelling an HTTP/2 write resets
    /// the whole stream, and a command that was half sent could not be told from one that was not. Commands are a few
    /// bytes, so the write does not wait on flow control.
    /// </summary>
    private async ValueTask SendAsync(byte[] command, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        try
        {
            await _commands.WriteAsync(command, CancellationToken.None).ConfigureAwait(false);
            await _commands.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception exception) when (exception is IOException or HttpRequestException or ObjectDisposedException)
        {
            _isEnded = true;
            throw new MiniQueueClientException($"The consumer stream of topic '{Topic}' ended: {exception.Message}", exception);
        }
    }

    /// <summary>Reads the response without handing the caller's token to the stream, so cancelling a wait does not reset the stream.</summary>
    private async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken)
    {
        try
        {
            if (_pendingRead is null)
            {
                var read = _lines.ReadAsync(CancellationToken.None);
                if (read.IsCompleted || !cancellationToken.CanBeCanceled)
                {
                    return await read.ConfigureAwait(false);
                }

                _pendingRead = read.AsTask();
            }

            var result = await _pendingRead.WaitAsync(cancellationToken).ConfigureAwait(false);
            _pendingRead = null;
            return result;
        }
        catch (Exception exception) when (exception is IOException or HttpRequestException or ObjectDisposedException)
        {
            _pendingRead = null;
            _isEnded = true;
            throw new MiniQueueClientException($"The consumer stream of topic '{Topic}' ended: {exception.Message}", exception);
        }
    }

    private (MiniQueueMessage Message, string? Error) ParseLine(ReadOnlySequence<byte> line)
    {
        try
        {
            var json = new Utf8JsonReader(line);
            if (json.Read() && json.TokenType == JsonTokenType.StartObject)
            {
                byte[]? body = null;
                var dackCount = 0;
                string? error = null;
                while (json.Read() && json.TokenType == JsonTokenType.PropertyName)
                {
                    if (json.ValueTextEquals("msg"u8))
                    {
                        json.Read();
                        body = json.TokenType == JsonTokenType.Null ? [] : json.GetBytesFromBase64();
                    }
                    else if (json.ValueTextEquals("dackCount"u8))
                    {
                        json.Read();
                        dackCount = json.GetInt32();
                    }
                    else if (json.ValueTextEquals("error"u8))
                    {
                        json.Read();
                        error = json.GetString();
                    }
                    else
                    {
                        json.Read();
                        json.Skip();
                    }
                }

                if (error is not null)
                {
                    return (default, error);
                }

                // The Go miniqueue sent an empty message as {}.
                return (new MiniQueueMessage(body ?? [], dackCount), null);
            }
        }
        catch (Exception exception) when (exception is JsonException or FormatException or InvalidOperationException)
        {
            _isEnded = true;
            throw new MiniQueueClientException($"The server sent a line that is not a message on the consumer stream of topic '{Topic}'.", exception);
        }

        _isEnded = true;
        throw new MiniQueueClientException($"The server sent a line that is not a message on the consumer stream of topic '{Topic}'.");
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_isDisposed, this);
        if (_isEnded)
        {
            throw new MiniQueueClientException($"The consumer stream of topic '{Topic}' has ended; subscribe again.");
        }
    }
}
