using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace MiniQueue.HttpBench;

/// <summary>
/// The servers under test, with identical Kestrel, TLS and HTTP/2 settings: <c>miniqueue</c> (AddMiniQueue +
/// MapMiniQueue, in memory, purge at the root as the host serves it) and <c>bare</c>, the ceiling, whose publish route
/// only reads the body and answers 201 and whose subscribe route answers every command line with one fixed message
/// line and a flush. <c>bare-fsync</c> and <c>bare-faster</c> are the bare server whose publishes are answered only after
/// a group commit (<see cref="GroupCommit"/>): the ceilings of a durable server on the machine.
/// <c>--cert</c>/<c>--key</c> (PEM) serve a given certificate, e.g. the one given to MiniQueue.Host,
/// otherwise a self-signed one is made (and written with <c>--cert-out</c>).
/// </summary>
internal static class BenchServer
{
    public static async Task<int> RunAsync(string[] args)
    {
        var mode = Arg(args, "--mode", "miniqueue");
        var port = int.Parse(Arg(args, "--port", "8443"), System.Globalization.CultureInfo.InvariantCulture);
        var prefill = int.Parse(Arg(args, "--prefill", "0"), System.Globalization.CultureInfo.InvariantCulture);
        var size = int.Parse(Arg(args, "--size", "100"), System.Globalization.CultureInfo.InvariantCulture);
        var topic = Arg(args, "--topic", "bench");

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.WebHost.UseKestrelHttpsConfiguration();
        builder.Logging.ClearProviders();
        var certificate = Arg(args, "--cert", "") is { Length: > 0 } pemCertificate
            ? X509Certificate2.CreateFromPemFile(pemCertificate, Arg(args, "--key", ""))
            : CreateCertificate();
        if (Arg(args, "--cert-out", "") is { Length: > 0 } certificatePath)
        {
            // The load tools pin exactly this certificate (--trust).
            await File.WriteAllBytesAsync(certificatePath, certificate.Export(X509ContentType.Cert));
        }

        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // The same limits for both servers: enough streams for the load (the bare app would otherwise keep 100).
            kestrel.Limits.Http2.MaxStreamsPerConnection = 1000;
            kestrel.Listen(IPAddress.Loopback, port, listen =>
            {
                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.UseHttps(certificate);
            });
        });

        if (mode == "miniqueue")
        {
            builder.Services.AddMiniQueue(configureHttp: http => http.PurgeAtRoot = true);
        }

        var app = builder.Build();
        if (mode == "miniqueue")
        {
            app.MapMiniQueue();
        }
        else if (mode is "bare-fsync" or "bare-faster")
        {
            // The bare routes, but a publish is answered once a group commit wrote and fsynced it (--db: the file), or
            // appended it to a FasterLog and committed that.
            var commit = new GroupCommit(
                Arg(args, "--db", Path.Combine(Path.GetTempPath(), $"{mode}-{port}.log")), inFlight: 2, faster: mode == "bare-faster");
            app.Lifetime.ApplicationStopped.Register(commit.Dispose);
            BareRoutes.Map(app, commit);
        }
        else
        {
            BareRoutes.Map(app);
        }

        await app.StartAsync();
        if (mode == "miniqueue" && prefill > 0)
        {
            var engine = app.Services.GetRequiredService<MiniQueueEngine>();
            var payload = new byte[size];
            for (var i = 0; i < prefill; i++)
            {
                await engine.PublishAsync(topic, payload);
            }
        }

        if (mode == "miniqueue" && Arg(args, "--drain", "") is { Length: > 0 } drainTopic)
        {
            // Keeps a topic short, as consumers would in a steady state, at almost no cost: purge it every 50 ms.
            var engine = app.Services.GetRequiredService<MiniQueueEngine>();
            _ = Task.Run(async () =>
            {
                using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(50));
                try
                {
                    while (await timer.WaitForNextTickAsync())
                    {
                        await engine.PurgeAsync(drainTopic);
                    }
                }
                catch (ObjectDisposedException)
                {
                }
            });
        }

        Console.WriteLine($"ready {mode} https://127.0.0.1:{port}");
        await app.WaitForShutdownAsync();
        return 0;
    }

    /// <summary>Trusts exactly the certificate in the file (DER, as written by <c>serve --cert-out</c>, or PEM).</summary>
    internal static RemoteCertificateValidationCallback TrustOnly(string path)
    {
        var thumbprint = X509CertificateLoader.LoadCertificateFromFile(path).GetCertHashString();
        return (_, certificate, _, _) => certificate is not null && certificate.GetCertHashString() == thumbprint;
    }

    internal static string Arg(string[] args, string name, string fallback)
    {
        var index = Array.IndexOf(args, name);
        return index >= 0 && index + 1 < args.Length ? args[index + 1] : fallback;
    }

    private static X509Certificate2 CreateCertificate()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        var now = DateTimeOffset.UtcNow;
        using var certificate = request.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(7));
        return X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), password: null);
    }
}
