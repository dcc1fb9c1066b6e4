using System.Buffers;
using Microsoft.AspNetCore.Http;

namespace MiniQueue.Http.Protocol;

/// <summary>The errors of a consumer stream.</summary>
internal enum StreamError
{
    /// <summary>No error: a delivery follows.</summary>
    None,
    NextValue,
    Ack,
    Nack,
    Back,
    Dack,
    Touch,
    LeaseExpired,
    Unrecognised,
    DecodingCommand,
    DackTooFewArguments,
    DackInvalidArgument,
}

/// <summary>
/// The protocol's error lines, <c>{"error":"..."}</c> and a newline, exactly as docs/PROTOCOL.md words them.
/// </summary>
internal static class ProtocolErrors
{
    public static ReadOnlySpan<byte> InvalidTopic => "{\"error\":\"invalid topic value\"}\n"u8;

    public static ReadOnlySpan<byte> MessageTooLarge => "{\"error\":\"message too large\"}\n"u8;

    public static ReadOnlySpan<byte> PublishFailed => "{\"error\":\"error publishing to broker\"}\n"u8;

    /// <summary>A publish whose <c>delay</c> is not whole seconds (an extension, docs/PROTOCOL.md "Delayed publish").</summary>
    public static ReadOnlySpan<byte> InvalidDelay => "{\"error\":\"invalid delay value\"}\n"u8;

    /// <summary>A publish whose Idempotency-Key is empty, too long or repeated (an extension, docs/PROTOCOL.md "Idempotent publish").</summary>
    public static ReadOnlySpan<byte> InvalidIdempotencyKey => "{\"error\":\"invalid idempotency key\"}\n"u8;

    public static ReadOnlySpan<byte> InvalidBody => "{\"error\":\"invalid request body\"}\n"u8;

    public static ReadOnlySpan<byte> PurgeFailed => "{\"error\":\"failed to purge topic\"}\n"u8;

    /// <summary>A redrive the store could not take (an extension, docs/PROTOCOL.md "Dead letters").</summary>
    public static ReadOnlySpan<byte> RedriveFailed => "{\"error\":\"failed to redrive topic\"}\n"u8;

    /// <summary>A request without credentials the server knows (an extension, docs/security.md).</summary>
    public static ReadOnlySpan<byte> Unauthorized => "{\"error\":\"unauthorized\"}\n"u8;

    /// <summary>A request whose credentials do not allow the operation on the topic (an extension, docs/security.md).</summary>
    public static ReadOnlySpan<byte> Forbidden => "{\"error\":\"forbidden\"}\n"u8;

    /// <summary>A subscribe over <see cref="MiniQueueHttpOptions.MaxConsumersPerTopic"/> (an extension, docs/security.md).</summary>
    public static ReadOnlySpan<byte> TooManyConsumers => "{\"error\":\"too many consumers\"}\n"u8;

    /// <summary>A publish that would create a topic over <see cref="MiniQueueOptions.MaxTopics"/> (an extension, docs/security.md).</summary>
    public static ReadOnlySpan<byte> TooManyTopics => "{\"error\":\"too many topics\"}\n"u8;

    public static ReadOnlySpan<byte> SubscribeNeedsHttp2 => "{\"error\":\"subscribe needs HTTP/2\"}\n"u8;

    public static ReadOnlySpan<byte> ShuttingDown => "{\"error\":\"server shutting down\"}\n"u8;

    public static ReadOnlySpan<byte> NextValue => "{\"error\":\"error getting next value for consumer\"}\n"u8;

    public static ReadOnlySpan<byte> Ack => "{\"error\":\"error ACKing message\"}\n"u8;

    public static ReadOnlySpan<byte> Nack => "{\"error\":\"error NACKing message\"}\n"u8;

    public static ReadOnlySpan<byte> Back => "{\"error\":\"error BACKing message\"}\n"u8;

    public static ReadOnlySpan<byte> Dack => "{\"error\":\"error DACKing message\"}\n"u8;

    /// <summary>TOUCH without a held message (an extension, docs/PROTOCOL.md "Leases").</summary>
    public static ReadOnlySpan<byte> Touch => "{\"error\":\"error TOUCHing message\"}\n"u8;

    /// <summary>The lease on the held message passed; the stream stays open (an extension, docs/PROTOCOL.md "Leases").</summary>
    public static ReadOnlySpan<byte> LeaseExpired => "{\"error\":\"lease expired\"}\n"u8;

    public static ReadOnlySpan<byte> Unrecognised => "{\"error\":\"unrecognised command received\"}\n"u8;

    public static ReadOnlySpan<byte> DecodingCommand => "{\"error\":\"error decoding command\"}\n"u8;

    public static ReadOnlySpan<byte> DackTooFewArguments => "{\"error\":\"too few arguments provided to DACK\"}\n"u8;

    public static ReadOnlySpan<byte> DackInvalidArgument => "{\"error\":\"invalid DACK duration argument at position [1]\"}\n"u8;

    /// <summary>The error line of a consumer stream's error.</summary>
    public static ReadOnlySpan<byte> LineOf(StreamError error) => error switch
    {
        StreamError.NextValue => NextValue,
        StreamError.Ack => Ack,
        StreamError.Nack => Nack,
        StreamError.Back => Back,
        StreamError.Dack => Dack,
        StreamError.Touch => Touch,
        StreamError.LeaseExpired => LeaseExpired,
        StreamError.Unrecognised => Unrecognised,
        StreamError.DackTooFewArguments => DackTooFewArguments,
        StreamError.DackInvalidArgument => DackInvalidArgument,
        StreamError.DecodingCommand => DecodingCommand,
        _ => throw new ArgumentOutOfRangeException(nameof(error), error, "Not an error."),
    };

    /// <summary>
    /// Whether the stream closes after the error line (docs/PROTOCOL.md, "Errors that close the stream").
    /// </summary>
    public static bool ClosesStream(StreamError error) =>
        error is StreamError.DecodingCommand or StreamError.DackTooFewArguments or StreamError.DackInvalidArgument;

    /// <summary>Answers a request with a status and an error line as a JSON body.</summary>
    public static Task WriteResponseAsync(HttpContext context, int statusCode, ReadOnlySpan<byte> line)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            return Task.CompletedTask;
        }

        response.StatusCode = statusCode;
        response.ContentType = "application/json; charset=utf-8";
        response.ContentLength = line.Length;
        response.BodyWriter.Write(line);
        return FlushAsync(response);
    }

    private static async Task FlushAsync(HttpResponse response) => await response.BodyWriter.FlushAsync().ConfigureAwait(false);
}
