using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MiniQueue.Client;

namespace MiniQueue.Tests.Http;

/// <summary>
/// A real Kestrel server on a loopback port with TLS (a self-signed certificate) and HTTP/1.1 + HTTP/2, running
/// AddMiniQueue and (by default) MapMiniQueue(). Clients trust exactly its certificate.
/// </summary>
internal sealed class MiniQueueTestHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly List<IDisposable> _clients = [];

    private MiniQueueTestHost(WebApplication app, Uri baseAddress)
    {
        _app = app;
        BaseAddress = baseAddress;
    }

    /// <summary>The server's root, e.g. https://127.0.0.1:12345/.</summary>
    public Uri BaseAddress { get; }

    public IServiceProvider Services => _app.Services;

    public MiniQueueEngine Engine => _app.Services.GetRequiredService<MiniQueueEngine>();

    /// <summary>Starts a host; <paramref name="configureServices"/> runs after AddMiniQueue, <paramref name="configureApp"/> replaces MapMiniQueue().</summary>
    public static async Task<MiniQueueTestHost> StartAsync(
        Action<WebApplicationBuilder>? configureServices = null,
        Action<WebApplication>? configureApp = null,
        bool addMiniQueue = true)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], EnvironmentName = Environments.Production });
        builder.WebHost.UseKestrelHttpsConfiguration();
        builder.WebHost.ConfigureKestrel(static kestrel =>
            kestrel.Listen(IPAddress.Loopback, 0, static listen =>
            {
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.UseHttps(TestCertificate.Certificate);
            }));
        builder.Logging.ClearProviders();
        if (Environment.GetEnvironmentVariable("MINIQUEUE_TEST_LOG") == "1")
        {
            builder.Logging.AddSimpleConsole().SetMinimumLevel(LogLevel.Debug);
        }

        builder.Services.Configure<HostOptions>(static options => options.ShutdownTimeout = TimeSpan.FromSeconds(5));
        if (addMiniQueue)
        {
            builder.Services.AddMiniQueue();
        }

        configureServices?.Invoke(builder);
        var app = builder.Build();
        if (configureApp is null)
        {
            app.MapMiniQueue();
        }
        else
        {
            configureApp(app);
        }

        await app.StartAsync().WaitAsync(TestSupport.Bound);
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.Single();
        return new MiniQueueTestHost(app, new Uri(address.EndsWith('/') ? address : address + "/"));
    }

    public Uri Url(string relative) => new(BaseAddress, relative);

    /// <summary>An HttpClient speaking exactly <paramref name="version"/> (HTTP/2 by default) to the server.</summary>
    public HttpClient CreateHttpClient(Version? version = null, Action<Socket>? onConnect = null)
    {
        var client = new HttpClient(CreateHandler(onConnect))
        {
            BaseAddress = BaseAddress,
            DefaultRequestVersion = version ?? HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,

            // Bounds every request of a test; a streaming response is read with its own bounded waits after that.
            Timeout = TestSupport.Bound,
        };
        _clients.Add(client);
        return client;
    }

    /// <summary>A handler trusting the test certificate; <paramref name="onConnect"/> sees each new socket.</summary>
    public static SocketsHttpHandler CreateHandler(Action<Socket>? onConnect = null)
    {
        var handler = new SocketsHttpHandler { EnableMultipleHttp2Connections = true };
        handler.SslOptions.RemoteCertificateValidationCallback = TestCertificate.Validation;
        if (onConnect is not null)
        {
            handler.ConnectCallback = async (context, cancellationToken) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }

                onConnect(socket);
                return new NetworkStream(socket, ownsSocket: true);
            };
        }

        return handler;
    }

    public MiniQueueClient CreateClient(string prefix = "", int connections = 1)
    {
        var client = new MiniQueueClient(new MiniQueueClientOptions
        {
            BaseAddress = new Uri(BaseAddress, prefix),
            Connections = connections,
            ServerCertificateValidation = TestCertificate.Validation,
            RequestTimeout = TestSupport.Bound,
        });
        _clients.Add(client);
        return client;
    }

    public Task StopAsync() => _app.StopAsync().WaitAsync(TestSupport.Bound);

    public async ValueTask DisposeAsync()
    {
        foreach (var client in _clients)
        {
            client.Dispose();
        }

        await _app.StopAsync().WaitAsync(TestSupport.Bound);
        await _app.DisposeAsync().AsTask().WaitAsync(TestSupport.Bound);
    }
}
