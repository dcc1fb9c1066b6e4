using System.Net;

namespace MiniQueue.Client;

/// <summary>
/// The server refused a request or ended a consumer stream: <see cref="ServerError"/> is the server's own text (the
/// <c>error</c> of its <c>{"error":"..."}</c> line) when it sent one.
/// </summary>
public sealed class MiniQueueClientException : Exception
{
    /// <summary>Creates the exception.</summary>
    public MiniQueueClientException()
        : base("The MiniQueue server refused the request.")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public MiniQueueClientException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the error that caused it.</summary>
    public MiniQueueClientException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for a server's answer.</summary>
    public MiniQueueClientException(string message, HttpStatusCode? statusCode, string? serverError)
        : base(message)
    {
        StatusCode = statusCode;
        ServerError = serverError;
    }

    /// <summary>The HTTP status of the refused request; <see langword="null"/> for an error on an open consumer stream.</summary>
    public HttpStatusCode? StatusCode { get; }

    /// <summary>The server's error text, e.g. <c>invalid topic value</c> or <c>error ACKing message</c>; <see langword="null"/> when it sent none.</summary>
    public string? ServerError { get; }
}
