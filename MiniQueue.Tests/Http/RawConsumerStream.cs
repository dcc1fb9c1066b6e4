using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using MiniQueue.Client;

namespace MiniQueue.Tests.Http;

/// <summary>
/// A subscribe request driven byte by byte, the way the Go examples write it: the request body is a stream the test
/// writes raw command text into, and the response is read line by line, exactly as sent.
/// </summary>
internal sealed class RawConsumerStream : IAsyncDisposable
{
    private readonly HttpRequestMessage _request;
    private readonly CommandStreamContent _content;
    private readonly Task<Stream> _body;
    private readonly PipeReader _lines;

    private RawConsumerStream(HttpRequestMessage request, HttpResponseMessage response, CommandStreamContent content, Task<Stream> body, Stream lines)
    {
        _request = request;
        Response = response;
        _content = content;
        _body = body;
        _lines = PipeReader.Create(lines);
    }

    public HttpResponseMessage Response { get; }

    /// <summary>The line a message is delivered as: <c>{"msg":"base64"}</c>, with its dackCount when above 0.</summary>
    public static string MessageLine(string text, int dackCount = 0) =>
        $"{{\"msg\":\"{Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(text))}\"{(dackCount > 0 ? $",\"dackCount\":{dackCount}" : "")}}}\n";

    /// <summary>Opens POST {path} with a streaming body; returns once the response headers arrived.</summary>
    public static async Task<RawConsumerStream> OpenAsync(HttpClient client, string path)
    {
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        var content = new CommandStreamContent();
        // A request built by hand has HTTP/1.1 unless told; the client's defaults apply only to its helpers.
        var request = new HttpRequestMessage(HttpMethod.Post, path)
        {
            Content = content,
            Version = client.DefaultRequestVersion,
            VersionPolicy = client.DefaultVersionPolicy,
        };
        var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        var lines = await response.Content.ReadAsStreamAsync(timeout.Token);

        // The body is awaited when first written, not here: a refusal (a 429, say) that reaches the client before the
        // handler starts sending the body ends the request without ever starting it.
        return new RawConsumerStream(request, response, content, content.GetStreamAsync(), lines);
    }

    /// <summary>Writes raw text into the request body and flushes it.</summary>
    public async Task SendAsync(string raw)
    {
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        var body = await _body.WaitAsync(timeout.Token);
        await body.WriteAsync(Encoding.UTF8.GetBytes(raw), timeout.Token);
        await body.FlushAsync(timeout.Token);
    }

    public async Task SendBytesAsync(byte[] raw)
    {
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        var body = await _body.WaitAsync(timeout.Token);
        await body.WriteAsync(raw, timeout.Token);
        await body.FlushAsync(timeout.Token);
    }

    /// <summary>The next line, newline included, exactly as the server sent it; null at the end of the stream.</summary>
    public async Task<string?> ReadLineAsync()
    {
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        while (true)
        {
            var result = await _lines.ReadAsync(timeout.Token);
            var buffer = result.Buffer;
            var newline = buffer.PositionOf((byte)'\n');
            if (newline is { } end)
            {
                var line = Encoding.UTF8.GetString(buffer.Slice(0, buffer.GetPosition(1, end)));
                _lines.AdvanceTo(buffer.GetPosition(1, end));
                return line;
            }

            if (result.IsCompleted)
            {
                var rest = Encoding.UTF8.GetString(buffer);
                _lines.AdvanceTo(buffer.End);
                return rest.Length == 0 ? null : rest;
            }

            _lines.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    /// <summary>Ends the request body (END_STREAM), as a client that is done does.</summary>
    public void EndBody() => _content.Complete();

    /// <summary>Resets the stream (RST_STREAM), as a client that gives up does.</summary>
    public void Reset() => Response.Dispose();

    public ValueTask DisposeAsync()
    {
        _content.Complete();
        Response.Dispose();
        _request.Dispose();
        return ValueTask.CompletedTask;
    }
}
