using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Logging.Console;
using MiniQueue;
using MiniQueue.Host;
using MiniQueue.Host.Security;
using MiniQueue.PostgreSql;
using Prometheus;

// The standalone miniqueue: the original's flags turned into options, then the same AddMiniQueue/MapMiniQueue any
// embedding application calls, plus /metrics and /healthz.
Gen0Budget.ApplyOrReexecute(Console.Error);
var (flags, exitCode) = Flags.Parse(args, Console.Error);
if (flags is null)
{
    return exitCode;
}

CertificateFiles? certificates = null;
var certificateMade = false;
if (!flags.H2c)
{
    var (certificate, certificatePath, keyPath, made, problem) = LoadCertificate(flags);
    if (problem is not null)
    {
        Console.Error.WriteLine(problem);
        Console.Error.Write(flags.Usage());
        return 2;
    }

    certificates = new CertificateFiles(certificate!, certificatePath!, keyPath!);
    certificateMade = made;
}

using var certificateFiles = certificates;

// -auth and -client-ca: read now, so that a bad file stops the host before it listens.
AccessControl? access = null;
X509Certificate2Collection? clientAuthority = null;
if (flags.Auth is not null || flags.ClientCa is not null)
{
    var problem = flags.Auth is null ? "flag -client-ca needs -auth: the certificate's common name is an identity of the access file"
        : flags.ClientCa is not null && flags.H2c ? "flag -client-ca needs TLS: it cannot be used with -h2c"
        : null;
    try
    {
        if (problem is null && flags.ClientCa is not null)
        {
            clientAuthority = [];
            clientAuthority.ImportFromPemFile(flags.ClientCa);
            problem = clientAuthority.Count == 0 ? $"invalid value \"{flags.ClientCa}\" for flag -client-ca: no certificate in it" : null;
        }

        if (problem is null)
        {
            access = new AccessControl(flags.Auth!, NullLogger.Instance);
        }
    }
    catch (Exception exception) when (exception is FormatException or IOException or UnauthorizedAccessException or CryptographicException)
    {
        problem = exception is FormatException
            ? $"invalid value \"{flags.Auth}\" for flag -auth: {exception.Message}"
            : $"invalid value for flag {(clientAuthority is null ? "-client-ca" : "-auth")}: {exception.Message}";
    }

    if (problem is not null)
    {
        Console.Error.WriteLine(problem);
        Console.Error.Write(flags.Usage());
        return 2;
    }
}

using var accessControl = access;

// Configuration (appsettings.json, the environment) is read once: reloading it on change would watch the working folder,
// the data directory's usual parent, and every write of the log would wake the watcher.
var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
builder.WebHost.UseKestrelHttpsConfiguration();
builder.WebHost.ConfigureKestrel(kestrel =>
{
    kestrel.AddServerHeader = false;
    kestrel.Limits.MaxConcurrentConnections = flags.MaxConnections;
    kestrel.Limits.MaxConcurrentUpgradedConnections = flags.MaxConnections;
    kestrel.Limits.KeepAliveTimeout = flags.IdleTimeout;
    kestrel.Limits.MaxRequestHeadersTotalSize = flags.MaxHeaderBytes;
    kestrel.Limits.Http2.MaxRequestHeaderFieldSize = Math.Max(kestrel.Limits.Http2.MaxRequestHeaderFieldSize, flags.MaxHeaderBytes);
    void Configure(ListenOptions listen)
    {
        if (flags.H2c)
        {
            listen.Protocols = HttpProtocols.Http2;
            return;
        }

        listen.Protocols = HttpProtocols.Http1AndHttp2;
        var https = new HttpsConnectionAdapterOptions
        {
            // TLS 1.2 or later only; the certificate as its files are now (they are watched).
            SslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            HandshakeTimeout = flags.HandshakeTimeout,
            ServerCertificateSelector = (_, _) => certificates!.Current,
        };
        if (clientAuthority is not null)
        {
            // A certificate that does not chain to the CA fails the handshake. One without a certificate gets through
            // TLS (so that /healthz stays open to load balancers) and is refused 401 by -auth.
            https.ClientCertificateMode = ClientCertificateMode.AllowCertificate;
            https.ClientCertificateValidation = (presented, _, _) => ChainsTo(presented, clientAuthority);
        }

        listen.UseHttps(https);
    }

    if (flags.Address.Length == 0)
    {
        kestrel.ListenAnyIP(flags.Port, Configure);
    }
    else if (flags.Address == "localhost")
    {
        kestrel.ListenLocalhost(flags.Port, Configure);
    }
    else
    {
        kestrel.Listen(IPAddress.Parse(flags.Address), flags.Port, Configure);
    }
});

// Logs go to stderr: one JSON object per line, or readable lines with -human.
builder.Logging.ClearProviders();
if (flags.Level != LogLevel.None)
{
    if (flags.Human)
    {
        builder.Logging.AddSimpleConsole(console =>
        {
            console.SingleLine = true;
            console.TimestampFormat = "HH:mm:ss.fff ";
        });
    }
    else
    {
        builder.Logging.AddJsonConsole(console =>
        {
            console.IncludeScopes = true;
            console.UseUtcTimestamp = true;
            console.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
        });
    }

    builder.Services.Configure<ConsoleLoggerOptions>(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
    builder.Logging.SetMinimumLevel(flags.Level);

    // ASP.NET Core logs every request at Information and below (a "Request starting" and a "Request finished" line, and
    // more): a queue server under load would spend more on those lines than on the messages. Its warnings and errors
    // stay, and so do the lines that say the server started and stopped. MiniQueue's own categories follow -level.
    builder.Logging.AddFilter("Microsoft", flags.Level <= LogLevel.Warning ? LogLevel.Warning : flags.Level);
    builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", flags.Level <= LogLevel.Information ? LogLevel.Information : flags.Level);

    // Kestrel's lines about connections and requests it refused (a limit hit, a handshake that timed out, a malformed
    // request) follow -level too: they are the log of the limits in docs/security.md.
    builder.Logging.AddFilter("Microsoft.AspNetCore.Server.Kestrel.Connections", flags.Level);
    builder.Logging.AddFilter("Microsoft.AspNetCore.Server.Kestrel.BadRequests", flags.Level);
    builder.Logging.AddFilter("Microsoft.AspNetCore.Server.Kestrel.Https", flags.Level);

    // This category only ever logs a request's start and end; while it is enabled at all, ASP.NET Core also gives every
    // request an Activity and a log scope (several allocations each), which nothing here uses.
    builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
}

builder.Services.AddMiniQueue(
    queue =>
    {
        // In shared mode the queue is in the database; the data directory keeps only a self-signed certificate.
        queue.DataDirectory = flags.Postgres is null ? flags.DataDirectory : null;
        queue.DelayCheckPeriod = flags.Period;
        queue.MaxMessageBytes = flags.MaxMessageBytes;
        queue.MaxTopics = flags.MaxTopics;
        queue.CommitMode = flags.Commit;
        queue.CommitInterval = flags.CommitInterval;
        if (flags.DiskReserve is { } reserve)
        {
            queue.DiskReserveBytes = reserve;
        }

        if (flags.MaxDisk is { } maxDisk)
        {
            queue.MaxDiskBytes = maxDisk;
        }

        if (flags.Lease is { } lease)
        {
            queue.Lease = lease;
        }

        if (flags.MaxDeliveries is { } maxDeliveries)
        {
            queue.MaxDeliveries = maxDeliveries;
        }

        if (flags.MetricsTopicLimit is { } limit)
        {
            queue.MetricsTopicLimit = limit;
        }
    },
    http =>
    {
        http.PurgeAtRoot = true;
        http.MaxStreamsPerConnection = flags.MaxStreams;
        http.MaxConsumersPerTopic = flags.MaxConsumers;
        http.AuthorizeTopics = access is not null;
    });

// After the engine's own hosted service (which opens it), before the server: the startup's garbage goes.
builder.Services.AddHostedService<StartupCollection>();

if (access is not null)
{
    builder.Services.AddSingleton(access);
    builder.Services.AddAuthentication(AccessAuthenticationHandler.SchemeName)
        .AddScheme<AuthenticationSchemeOptions, AccessAuthenticationHandler>(AccessAuthenticationHandler.SchemeName, null);
    builder.Services.AddAuthorizationBuilder()
        .AddPolicy("metrics", policy => policy.AddRequirements(AccessAuthorizationHandler.Metrics));
    builder.Services.AddSingleton<IAuthorizationHandler, AccessAuthorizationHandler>();
}

if (flags.Rate > 0)
{
    builder.Services.AddRateLimiter(limiter =>
    {
        // Per identity (per client address without -auth); /healthz is never limited.
        limiter.GlobalLimiter = PartitionedRateLimiter.Create<HttpContext, string>(context =>
            context.Request.Path == "/healthz"
                ? RateLimitPartition.GetNoLimiter("/healthz")
                : RateLimitPartition.GetTokenBucketLimiter(
                    context.User.Identity?.Name is { } name ? "identity:" + name : "address:" + context.Connection.RemoteIpAddress,
                    _ => new TokenBucketRateLimiterOptions
                    {
                        TokenLimit = flags.Rate,
                        TokensPerPeriod = flags.Rate,
                        ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                        QueueLimit = 0,
                    }));
        limiter.OnRejected = static async (rejected, cancellationToken) =>
        {
            var context = rejected.HttpContext;
            var retryAfter = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? wait : TimeSpan.FromSeconds(1);
            context.Response.StatusCode = StatusCodes.Status429TooManyRequests;
            context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
            context.Response.ContentType = "application/json; charset=utf-8";
            var logger = context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(HostLog.Category);
            HostLog.RateLimited(logger, context.Request.Path, context.User.Identity?.Name, context.Connection.RemoteIpAddress);
            await context.Response.Body.WriteAsync("{\"error\":\"too many requests\"}\n"u8.ToArray(), cancellationToken);
        };
    });
}

if (flags.Postgres is { } connectionString)
{
    builder.Services.AddMiniQueuePostgreSql(connectionString);
}

builder.Services.AddHealthChecks().AddMiniQueue();

var app = builder.Build();
var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(HostLog.Category);
if (flags.DataDirectory == "./data" && flags.Postgres is null)
{
    HostLog.DefaultDataDirectory(log, flags.DataDirectory);
}

certificates?.LogTo(log);
access?.LogTo(log);

if (certificateMade)
{
    var tls = Path.GetFullPath(Path.Combine(flags.DataDirectory, "tls"));
    HostLog.SelfSignedCertificate(log, Flags.DefaultCert, Path.Combine(tls, "localhost.pem"), Path.Combine(tls, "localhost-key.pem"));
}

// Metrics come from .NET meters only: MiniQueue's, ASP.NET Core's and Kestrel's (http.server.request.duration and the
// rest: what prometheus-net's own HTTP middleware would count a second time), and the runtime's (System.Runtime).
// Its event-counter adapter is off: listening to event sources makes ASP.NET Core and Kestrel write an event for every
// request, which cost more than the rest of a publish. prometheus-net's process metrics stay.
Metrics.SuppressDefaultMetrics(new SuppressDefaultMetricOptions { SuppressEventCounters = true });

// The engine's observable instruments (its per-topic series among them) are reported afresh at every scrape, and the
// engine leaves out a topic that is gone or no longer among the busiest. prometheus-net keeps a series it is no longer
// given until it expires, 5 minutes by default, which would show a gone topic beside the "/other" total that now
// counts it. So those instruments get an adapter of their own whose series expire a second after their last report;
// every other instrument (counters and histograms that count on between scrapes) stays with the default adapter.
static bool IsReportedPerScrape(Instrument instrument) => instrument.IsObservable && instrument.Meter.Name == "MiniQueue";
Metrics.ConfigureMeterAdapter(adapter => adapter.InstrumentFilterPredicate =
    instrument => !IsReportedPerScrape(instrument) && !HotMetrics.IsExcludedFromAdapter(instrument));
using var hotMetrics = new HotMetrics(Metrics.DefaultRegistry);
using var perScrapeAdapter = MeterAdapter.StartListening(new MeterAdapterOptions
{
    InstrumentFilterPredicate = IsReportedPerScrape,
    MetricsExpireAfter = TimeSpan.FromSeconds(1),
});

// prometheus-net starts listening to .NET meters at its first collection; collect once now, so counts from the
// start on (not from the first scrape on) are kept.
await Metrics.DefaultRegistry.CollectAndExportAsTextAsync(Stream.Null);
// Who the request is, then its rate (per identity, or per address for requests without one, refused ones included, so
// that a peer without credentials cannot make the host answer 401s as fast as it likes), then the refusal of requests
// without credentials: every request but /healthz needs credentials the access file knows, before anything else is
// looked at.
if (access is not null)
{
    app.UseAuthentication();
}

if (flags.Rate > 0)
{
    app.UseRateLimiter();
}

if (access is not null)
{
    app.Use(static (context, next) => context.User.Identity?.IsAuthenticated == true || context.Request.Path == "/healthz"
        ? next(context)
        : context.ChallengeAsync());
}

// Publishes skip endpoint routing: matching "/publish/{topic}" built a route-value dictionary and a string per request,
// half of the host's allocations under publish load. The protocol's middleware answers them first (as the endpoint
// would, 405 for another method), and tags them with the route for the request-duration histogram.
app.UseWhen(static context => IsPublishPath(context.Request.Path), static branch => branch
    .Use(static (context, next) =>
    {
        context.Features.Get<IHttpMetricsTagsFeature>()?.Tags.Add(HotMetrics.PublishRoute);
        return next(context);
    })
    .UseMiniQueue());
app.UseRouting();
if (access is not null)
{
    app.UseAuthorization();
    app.MapMetrics("/metrics").RequireAuthorization("metrics");
}
else
{
    app.MapMetrics("/metrics");
}

app.MapHealthChecks("/healthz");
app.MapMiniQueue();

var dataDirectory = flags.Postgres is null ? Path.GetFullPath(flags.DataDirectory) : "PostgreSQL (shared mode)";
try
{
    HostLog.Starting(log, flags.Port, flags.H2c ? "h2c" : "TLS", dataDirectory);
    await app.RunAsync();
    return 0;
}
catch (Exception exception) when (exception is MiniQueueStoreException or IOException or InvalidOperationException or Microsoft.Extensions.Options.OptionsValidationException)
{
    HostLog.CouldNotStart(log, exception.Message, exception);
    Console.Error.WriteLine($"miniqueue could not start: {exception.Message}");
    return 1;
}

// The -cert/-key pair; when both are the defaults and missing, a self-signed certificate in the data directory.
static (X509Certificate2? Certificate, string? CertificatePath, string? KeyPath, bool Made, string? Problem) LoadCertificate(Flags flags)
{
    var certificatePath = flags.Cert;
    var keyPath = flags.Key;
    var made = false;
    if (!File.Exists(certificatePath) || !File.Exists(keyPath))
    {
        if (flags.CertGiven && !File.Exists(certificatePath))
        {
            return (null, null, null, false, $"invalid value \"{flags.Cert}\" for flag -cert: no such file");
        }

        if (flags.KeyGiven && !File.Exists(keyPath))
        {
            return (null, null, null, false, $"invalid value \"{flags.Key}\" for flag -key: no such file");
        }

        if (flags.CertGiven || flags.KeyGiven)
        {
            var missing = File.Exists(certificatePath) ? "-key" : "-cert";
            return (null, null, null, false, $"flag {missing} is needed too: the default file for it does not exist");
        }

        (certificatePath, keyPath, made) = DevCertificate.Ensure(flags.DataDirectory);
    }

    try
    {
        return (X509Certificate2.CreateFromPemFile(certificatePath, keyPath), certificatePath, keyPath, made, null);
    }
    catch (Exception exception) when (exception is CryptographicException or IOException or UnauthorizedAccessException)
    {
        return (null, null, null, false, $"invalid value \"{flags.Cert}\" for flag -cert: the certificate and key ({certificatePath}, {keyPath}) could not be loaded: {exception.Message}");
    }
}

// "/publish/" followed by one non-empty path segment, read from the string as it is (PathString.StartsWithSegments
// would allocate the rest of the path on every request).
static bool IsPublishPath(PathString path) =>
    path.Value is { } value && value.Length > "/publish/".Length && value.StartsWith("/publish/", StringComparison.Ordinal)
    && value.IndexOf('/', "/publish/".Length) < 0;

// Whether a client certificate chains to the -client-ca certificates (and to nothing else: the machine's roots are not
// asked). Revocation is not checked: the CA is the operator's own.
static bool ChainsTo(X509Certificate2 presented, X509Certificate2Collection authority)
{
    using var chain = new X509Chain();
    chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
    chain.ChainPolicy.CustomTrustStore.AddRange(authority);
    chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
    return chain.Build(presented);
}
