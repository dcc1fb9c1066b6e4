using System.Net;

namespace MiniQueue.Client;

/// <summary>
/// The request body of a consumer stream: a duplex <see cref="HttpContent"/> that hands out the request stream once
/// the handler starts sending, and stays open (so the body goes on) until <see cref="Complete"/>.
/// </summary>
internal sealed class CommandStreamContent : HttpContent
{
    private readonly TaskCompletionSource<Stream> _stream = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The request stream, once the handler has started sending the body.</summary>
    public Task<Stream> GetStreamAsync() => _stream.Task;

    /// <summary>Ends the request body (END_STREAM).</summary>
    public void Complete()
    {
        _stream.TrySetException(new ObjectDisposedException(nameof(CommandStreamContent), "The consumer stream ended before its body started."));
        _completed.TrySetResult();
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        // SocketsHttpHandler buffers the HEADERS frame of a request whose body has not started: without this flush
        // the server would not see the request until the first command (dotnet/runtime#30295).
        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        _stream.TrySetResult(stream);
        await _completed.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    protected override bool TryComputeLength(out long length)
    {
        length = -1;
        return false;
    }
}
