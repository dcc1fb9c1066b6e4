using System.Globalization;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;

namespace MiniQueue.Tests.Http;

/// <summary>What a server answered on a <see cref="RawHttp1Connection"/>.</summary>
internal sealed record RawHttp1Response(int StatusCode, string Head, string Body);

/// <summary>
/// One HTTP/1.1 connection over TLS (ALPN <c>http/1.1</c>) that writes exactly the bytes it is given, for requests that
/// HttpClient will not send, such as a malformed chunked body.
/// </summary>
internal sealed class RawHttp1Connection : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly SslStream _tls;

    private RawHttp1Connection(Socket socket, SslStream tls)
    {
        _socket = socket;
        _tls = tls;
    }

    public static async Task<RawHttp1Connection> OpenAsync(Uri server, RemoteCertificateValidationCallback validation)
    {
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(server.Host, server.Port, timeout.Token);
            var tls = new SslStream(new NetworkStream(socket, ownsSocket: false), leaveInnerStreamOpen: false, validation);
            await tls.AuthenticateAsClientAsync(
                new SslClientAuthenticationOptions
                {
                    TargetHost = server.Host,
                    ApplicationProtocols = [SslApplicationProtocol.Http11],
                },
                timeout.Token);
            return new RawHttp1Connection(socket, tls);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Writes <paramref name="text"/> as ASCII, as it is.</summary>
    public async Task SendAsync(string text)
    {
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        await _tls.WriteAsync(Encoding.ASCII.GetBytes(text), timeout.Token);
        await _tls.FlushAsync(timeout.Token);
    }

    /// <summary>Ends the sending side (TLS close_notify, then a TCP FIN); the server can still answer.</summary>
    public async Task CloseSendingAsync()
    {
        await _tls.ShutdownAsync().WaitAsync(TestSupport.Bound);
        _socket.Shutdown(SocketShutdown.Send);
    }

    /// <summary>
    /// Reads one response (the head, and a body of <c>content-length</c> bytes); <see langword="null"/> when the server
    /// closed or reset the connection without answering.
    /// </summary>
    public async Task<RawHttp1Response?> ReadResponseAsync()
    {
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        var received = new MemoryStream();
        var buffer = new byte[4096];
        int? headLength = null;
        var bodyLength = 0;
        while (headLength is null || received.Length < headLength + bodyLength)
        {
            int read;
            try
            {
                read = await _tls.ReadAsync(buffer, timeout.Token);
            }
            catch (IOException)
            {
                read = 0;
            }

            if (read == 0)
            {
                break;
            }

            received.Write(buffer, 0, read);
            if (headLength is null)
            {
                var text = Encoding.ASCII.GetString(received.GetBuffer(), 0, (int)received.Length);
                var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                if (end >= 0)
                {
                    headLength = end + 4;
                    bodyLength = ContentLength(text[..end]);
                }
            }
        }

        if (headLength is null)
        {
            return null;
        }

        var all = Encoding.ASCII.GetString(received.GetBuffer(), 0, (int)received.Length);
        var head = all[..(headLength.Value - 4)];
        var status = int.Parse(head.Split(' ', 3)[1], CultureInfo.InvariantCulture);
        return new RawHttp1Response(status, head, all[headLength.Value..]);
    }

    private static int ContentLength(string head)
    {
        foreach (var line in head.Split("\r\n"))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0 && line[..colon].Trim().Equals("content-length", StringComparison.OrdinalIgnoreCase))
            {
                return int.Parse(line[(colon + 1)..].Trim(), CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }

    public async ValueTask DisposeAsync()
    {
        await _tls.DisposeAsync();
        _socket.Dispose();
    }
}
