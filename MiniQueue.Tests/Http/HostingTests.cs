using System.Net;
using System.Security.Claims;
using System.Text.Encodings.Web;
using System.Threading.Channels;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MiniQueue.Http;

namespace MiniQueue.Tests.Http;

/// <summary>AddMiniQueue, MapMiniQueue and UseMiniQueue in an application: options, lifetimes, conventions, mounting.</summary>
[CancelAfter(60_000)]
public sealed class HostingTests
{
    [Test]
    public void MapMiniQueue_WithoutAddMiniQueue_FailsNamingAddMiniQueue()
    {
        var app = WebApplication.CreateSlimBuilder().Build();

        Assert.That(() => app.MapMiniQueue(), Throws.InvalidOperationException.With.Message.Contains("AddMiniQueue"));
    }

    [Test]
    public void UseMiniQueue_WithoutAddMiniQueue_FailsNamingAddMiniQueue()
    {
        var app = WebApplication.CreateSlimBuilder().Build();

        Assert.That(() => app.UseMiniQueue("/mq"), Throws.InvalidOperationException.With.Message.Contains("AddMiniQueue"));
    }

    [Test]
    public void Options_AreBoundFromTheMiniQueueSection_ThenFromCode()
    {
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["MiniQueue:MaxMessageBytes"] = "1000",
            ["MiniQueue:DelayCheckPeriod"] = "00:00:05",
            ["MiniQueue:MetricsTopicLimit"] = "7",
            ["MiniQueue:Http:PurgeAtRoot"] = "true",
            ["MiniQueue:Http:MaxStreamsPerConnection"] = "50",
        }).Build());
        services.AddMiniQueue(static options => options.DelayCheckPeriod = TimeSpan.FromSeconds(2));
        using var provider = services.BuildServiceProvider();

        var options = provider.GetRequiredService<IOptions<MiniQueueOptions>>().Value;
        var http = provider.GetRequiredService<IOptions<MiniQueueHttpOptions>>().Value;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(options.MaxMessageBytes, Is.EqualTo(1000));
            Assert.That(options.DelayCheckPeriod, Is.EqualTo(TimeSpan.FromSeconds(2)), "code runs after configuration");
            Assert.That(options.MetricsTopicLimit, Is.EqualTo(7));
            Assert.That(http.PurgeAtRoot, Is.True);
            Assert.That(http.MaxStreamsPerConnection, Is.EqualTo(50));
        }
    }

    [Test]
    public void TopicPolicies_AreBoundFromTheMiniQueueSection()
    {
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["MiniQueue:Lease"] = "00:00:30",
            ["MiniQueue:MaxDeliveries"] = "5",
            ["MiniQueue:TopicPolicies:0:Topics"] = "reports.*",
            ["MiniQueue:TopicPolicies:0:Lease"] = "00:10:00",
            ["MiniQueue:TopicPolicies:1:Topics"] = "orders",
            ["MiniQueue:TopicPolicies:1:MaxDeliveries"] = "2",
            ["MiniQueue:TopicPolicies:1:DeadLetterTopic"] = "orders-failed",
        }).Build());
        services.AddMiniQueue();
        using var provider = services.BuildServiceProvider();

        var options = provider.GetRequiredService<IOptions<MiniQueueOptions>>().Value;

        using (Assert.EnterMultipleScope())
        {
            Assert.That(options.Lease, Is.EqualTo(TimeSpan.FromSeconds(30)));
            Assert.That(options.MaxDeliveries, Is.EqualTo(5));
            Assert.That(options.TopicPolicies.Select(static p => (p.Topics, p.Lease, p.MaxDeliveries, p.DeadLetterTopic)), Is.EqualTo(new[]
            {
                ("reports.*", (TimeSpan?)TimeSpan.FromMinutes(10), (int?)null, (string?)null),
                ("orders", null, 2, "orders-failed"),
            }));
        }
    }

    [Test]
    public void Options_TakeTheClockAndLoggingFromTheApplication_UnlessSet()
    {
        var clock = TestSupport.NewClock();
        var services = new ServiceCollection();
        services.AddSingleton<TimeProvider>(clock);
        services.AddMiniQueue();
        using var provider = services.BuildServiceProvider();

        var options = provider.GetRequiredService<IOptions<MiniQueueOptions>>().Value;

        Assert.That(options.TimeProvider, Is.SameAs(clock));
        Assert.That(options.LoggerFactory, Is.SameAs(provider.GetRequiredService<ILoggerFactory>()));
    }

    [Test]
    public void InvalidOptions_FailTheStart_NamingTheProperty()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddMiniQueue(static options => options.MaxMessageBytes = -1);
        var app = builder.Build();

        Assert.That(() => app.StartAsync(), Throws.TypeOf<OptionsValidationException>().With.Message.Contains("MaxMessageBytes"));
    }

    [Test]
    public async Task ConfiguredMaxMessageBytes_IsThePublishLimit()
    {
        await using var host = await MiniQueueTestHost.StartAsync(static builder =>
            builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["MiniQueue:MaxMessageBytes"] = "10" }));
        using var client = host.CreateHttpClient();

        using var fits = await client.PostAsync("publish/t", new ByteArrayContent(new byte[10]));
        using var over = await client.PostAsync("publish/t", new ByteArrayContent(new byte[11]));

        Assert.That((fits.StatusCode, over.StatusCode), Is.EqualTo((HttpStatusCode.Created, HttpStatusCode.RequestEntityTooLarge)));
        Assert.That(await over.Content.ReadAsStringAsync(), Is.EqualTo("{\"error\":\"message too large\"}\n"));
    }

    [Test]
    public async Task KestrelStreamLimit_IsRaised_UnlessTheApplicationSetItsOwn()
    {
        await using var defaulted = await MiniQueueTestHost.StartAsync();
        await using var ownLimit = await MiniQueueTestHost.StartAsync(static builder =>
            builder.WebHost.ConfigureKestrel(static kestrel => kestrel.Limits.Http2.MaxStreamsPerConnection = 7));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(defaulted.Services.GetRequiredService<IOptions<KestrelServerOptions>>().Value.Limits.Http2.MaxStreamsPerConnection,
                Is.EqualTo(MiniQueueHttpOptions.DefaultMaxStreamsPerConnection));
            Assert.That(ownLimit.Services.GetRequiredService<IOptions<KestrelServerOptions>>().Value.Limits.Http2.MaxStreamsPerConnection,
                Is.EqualTo(7));
        }
    }

    [TestCase("/mq/")]
    [TestCase("mq")]
    [TestCase("/api/{tenant}/mq")]
    public async Task MapMiniQueue_AcceptsPrefixesWithOrWithoutSlashes_AndRoutePatterns(string prefix)
    {
        await using var host = await MiniQueueTestHost.StartAsync(configureApp: app => app.MapMiniQueue(prefix));
        using var client = host.CreateHttpClient();
        var path = prefix.Contains("{tenant}", StringComparison.Ordinal) ? "api/acme/mq/" : "mq/";

        using var published = await client.PostAsync($"{path}publish/t", new StringContent("x"));
        using var purged = await client.DeleteAsync($"{path}t");

        Assert.That((published.StatusCode, purged.StatusCode), Is.EqualTo((HttpStatusCode.Created, HttpStatusCode.OK)));
    }

    [Test]
    public async Task MapMiniQueue_UnderAPrefix_TakesRequireAuthorization()
    {
        await using var host = await MiniQueueTestHost.StartAsync(
            static builder =>
            {
                builder.Services.AddAuthentication(TokenHandler.SchemeName).AddScheme<AuthenticationSchemeOptions, TokenHandler>(TokenHandler.SchemeName, null);
                builder.Services.AddAuthorization();
            },
            static app =>
            {
                app.UseAuthentication();
                app.UseAuthorization();
                app.MapMiniQueue("/mq").RequireAuthorization();
            });
        using var client = host.CreateHttpClient();

        using var anonymousPublish = await client.PostAsync("mq/publish/t", new StringContent("x"));
        using var anonymousSubscribe = await client.PostAsync("mq/subscribe/t", new StringContent("\"INIT\"\n"));
        using var anonymousPurge = await client.DeleteAsync("mq/t");
        using var request = new HttpRequestMessage(HttpMethod.Post, "mq/publish/t") { Content = new StringContent("x") };
        request.Headers.Add(TokenHandler.Header, "let-me-in");
        using var authorized = await client.SendAsync(request);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(anonymousPublish.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(anonymousSubscribe.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(anonymousPurge.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(authorized.StatusCode, Is.EqualTo(HttpStatusCode.Created));
            Assert.That(host.Engine.GetStats("t").Ready, Is.EqualTo(1));
        }
    }

    [Test]
    public async Task MapMiniQueue_AtTheRoot_MapsPurgeOnlyWhenOptedIn()
    {
        await using var plain = await MiniQueueTestHost.StartAsync();
        await using var optedIn = await MiniQueueTestHost.StartAsync(static builder =>
            builder.Services.AddMiniQueue(configure: null, static http => http.PurgeAtRoot = true));
        await plain.Engine.PublishAsync("t", "x");
        await optedIn.Engine.PublishAsync("t", "x");
        using var plainClient = plain.CreateHttpClient();
        using var optedInClient = optedIn.CreateHttpClient();

        using var notMapped = await plainClient.DeleteAsync("t");
        using var purged = await optedInClient.DeleteAsync("t");
        using var wrongMethod = await optedInClient.GetAsync("t");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(notMapped.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
            Assert.That(plain.Engine.GetStats("t").Ready, Is.EqualTo(1));
            Assert.That(purged.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(optedIn.Engine.GetStats("t").Ready, Is.Zero);
            Assert.That(wrongMethod.StatusCode, Is.EqualTo(HttpStatusCode.MethodNotAllowed));
        }
    }

    [Test]
    public async Task MapMiniQueue_LeavesTheApplicationsOwnRoutesAlone()
    {
        await using var host = await MiniQueueTestHost.StartAsync(
            static builder => builder.Services.AddMiniQueue(null, static http => http.PurgeAtRoot = true),
            static app =>
            {
                app.MapGet("/health", static () => "ok");
                app.MapGet("/publish/status", static () => "app");
                app.MapMiniQueue();
            });
        using var client = host.CreateHttpClient();

        Assert.That(await client.GetStringAsync("health"), Is.EqualTo("ok"));
        Assert.That(await client.GetStringAsync("publish/status"), Is.EqualTo("app"));
    }

    [TestCase("/mq", "mq/")]
    [TestCase("/mq/", "mq/")]
    [TestCase("/", "")]
    [TestCase("", "")]
    public async Task UseMiniQueue_ServesTheProtocol_AndPassesOtherRequestsOn(string prefix, string path)
    {
        await using var host = await MiniQueueTestHost.StartAsync(
            static builder => builder.Services.AddMiniQueue(null, static http => http.PurgeAtRoot = true),
            app =>
            {
                app.UseMiniQueue(prefix);
                app.Run(static context =>
                {
                    context.Response.StatusCode = StatusCodes.Status418ImATeapot;
                    return Task.CompletedTask;
                });
            });
        using var client = host.CreateHttpClient();
        var topic = "t-" + Guid.NewGuid().ToString("N");

        using var published = await client.PostAsync($"{path}publish/{topic}", new StringContent("hello"));
        await using (var stream = await RawConsumerStream.OpenAsync(client, $"{path}subscribe/{topic}"))
        {
            await stream.SendAsync("\"INIT\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"msg\":\"aGVsbG8=\"}\n"));
        }

        using var invalid = await client.PostAsync($"{path}publish/a%2Fb", new StringContent("x"));
        using var wrongMethod = await client.GetAsync($"{path}publish/{topic}");
        using var other = await client.GetAsync($"{path}publish/{topic}/more");
        using var purged = await client.DeleteAsync($"{path}{topic}");
        using var redriven = await client.PostAsync($"{path}redrive/{topic}", null);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(published.StatusCode, Is.EqualTo(HttpStatusCode.Created));
            Assert.That(redriven.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(await redriven.Content.ReadAsStringAsync(), Is.EqualTo("{\"moved\":0}\n"));
            Assert.That(invalid.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(wrongMethod.StatusCode, Is.EqualTo(HttpStatusCode.MethodNotAllowed));
            Assert.That(wrongMethod.Content.Headers.Allow, Is.EquivalentTo(new[] { "POST" }));
            Assert.That(other.StatusCode, Is.EqualTo((HttpStatusCode)StatusCodes.Status418ImATeapot));
            Assert.That(purged.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }
    }

    [Test]
    public async Task Engine_IsAvailableToTheApplication_ForAnInProcessWorker()
    {
        var received = Channel.CreateUnbounded<string>();
        await using var host = await MiniQueueTestHost.StartAsync(builder =>
        {
            builder.Services.AddSingleton(received.Writer);
            builder.Services.AddHostedService<EchoWorker>();
        });
        using var client = host.CreateHttpClient();

        using var response = await client.PostAsync("publish/jobs", new StringContent("job 1"));

        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        Assert.That(await received.Reader.ReadAsync(timeout.Token), Is.EqualTo("job 1"));
    }

    [Test]
    public async Task Engine_ResolvedBeforeTheHostStarts_IsOpenAndTheSameOne()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddMiniQueue();
        await using var app = builder.Build();

        var early = app.Services.GetRequiredService<MiniQueueEngine>();
        await early.PublishAsync("t", "x");
        await app.StartAsync();

        Assert.That(app.Services.GetRequiredService<MiniQueueEngine>(), Is.SameAs(early));
        await app.StopAsync();
    }

    [Test]
    public async Task Stopping_EndsOpenConsumerStreams_AndClosesTheEngine()
    {
        // A long shutdown timeout: if the stream did not end by itself, the stop would exceed the test's bound.
        var host = await MiniQueueTestHost.StartAsync(static builder =>
            builder.Services.Configure<HostOptions>(static options => options.ShutdownTimeout = TimeSpan.FromMinutes(5)));
        await using var _ = host;
        var engine = host.Engine;
        await engine.PublishAsync("t", "held");
        using var client = host.CreateHttpClient();
        await using var holding = await RawConsumerStream.OpenAsync(client, "subscribe/t");
        await holding.SendAsync("\"INIT\"\n");
        Assert.That(await holding.ReadLineAsync(), Is.EqualTo("{\"msg\":\"aGVsZA==\"}\n"));
        await using var waiting = await RawConsumerStream.OpenAsync(client, "subscribe/empty");
        await waiting.SendAsync("\"INIT\"\n");

        await host.StopAsync();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(await holding.ReadLineAsync(), Is.Null, "the holding stream ended");
            Assert.That(await waiting.ReadLineAsync(), Is.Null, "the waiting stream ended");
            Assert.That(() => engine.PublishAsync("t", "late").AsTask(), Throws.TypeOf<ObjectDisposedException>());
        }
    }

    [Test]
    public async Task SubscribeStreams_HaveNoBodyRateOrSizeLimit_AndPublishIsLimitedToTheMaximumMessage()
    {
        var seen = new List<(string Path, RecordingDataRateFeature Rate, long? MaxBody)>();
        await using var host = await MiniQueueTestHost.StartAsync(configureApp: app =>
        {
            app.Use(async (context, next) =>
            {
                // Kestrel's HTTP/2 feature can only be set (to null), not read: record what the handler sets.
                var rate = new RecordingDataRateFeature(context.Features.Get<IHttpMinRequestBodyDataRateFeature>()!);
                context.Features.Set<IHttpMinRequestBodyDataRateFeature>(rate);
                await next(context);
                lock (seen)
                {
                    seen.Add((context.Request.Path, rate, context.Features.Get<IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize));
                }
            });
            app.MapMiniQueue();
        });
        using var client = host.CreateHttpClient();

        using (await client.PostAsync("publish/t", new StringContent("x")))
        {
        }

        await using (var stream = await RawConsumerStream.OpenAsync(client, "subscribe/t"))
        {
            await stream.SendAsync("\"INIT\"\n");
            await stream.ReadLineAsync();
            stream.EndBody();
            await stream.ReadLineAsync();
        }

        await WaitForAsync(() =>
        {
            lock (seen)
            {
                return seen.Count == 2;
            }
        });
        var subscribe = seen.Single(static entry => entry.Path == "/subscribe/t");
        var publish = seen.Single(static entry => entry.Path == "/publish/t");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(subscribe.Rate.WasSetToNull, Is.True);
            Assert.That(subscribe.MaxBody, Is.Null);
            Assert.That(publish.Rate.WasSetToNull, Is.False);
            Assert.That(publish.MaxBody, Is.EqualTo(MiniQueueOptions.DefaultMaxMessageBytes));
        }
    }

    private sealed class RecordingDataRateFeature(IHttpMinRequestBodyDataRateFeature inner) : IHttpMinRequestBodyDataRateFeature
    {
        public bool WasSetToNull { get; private set; }

        public MinDataRate? MinDataRate
        {
            get => inner.MinDataRate;
            set
            {
                WasSetToNull = value is null;
                inner.MinDataRate = value;
            }
        }
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        while (!condition())
        {
            await Task.Delay(10, timeout.Token);
        }
    }

    /// <summary>An application's own background worker consuming in process.</summary>
    private sealed class EchoWorker(MiniQueueEngine engine, ChannelWriter<string> received) : BackgroundService
    {
        protected override async Task ExecuteAsync(CancellationToken stoppingToken)
        {
            await using var consumer = engine.Subscribe("jobs");
            try
            {
                while (true)
                {
                    var delivery = await consumer.ReceiveAsync(stoppingToken);
                    await received.WriteAsync(delivery.Text(), stoppingToken);
                    await consumer.AckAsync(stoppingToken);
                }
            }
            catch (Exception exception) when (exception is OperationCanceledException or ObjectDisposedException)
            {
            }
        }
    }

    /// <summary>Authenticates requests carrying a fixed header; challenges with 401 otherwise.</summary>
    private sealed class TokenHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder)
        : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
    {
        public const string SchemeName = "Token";
        public const string Header = "X-Token";

        protected override Task<AuthenticateResult> HandleAuthenticateAsync()
        {
            if (Request.Headers[Header] != "let-me-in")
            {
                return Task.FromResult(AuthenticateResult.NoResult());
            }

            var identity = new ClaimsIdentity([new Claim(ClaimTypes.Name, "tester")], SchemeName);
            return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName)));
        }
    }
}
