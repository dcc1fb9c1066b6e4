using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using MiniQueue.Tests.Http;
using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Host;

/// <summary>
/// The host's security over real TLS (docs/security.md): <c>-auth</c> tokens and their grants, a revoked token and a bad
/// access file, client certificates of <c>-client-ca</c>, <c>-rate</c>, and the header limit.
/// </summary>
[CancelAfter(120_000)]
public sealed class SecurityHostTests
{
    private static readonly string s_writer = NewToken();
    private static readonly string s_reader = NewToken();
    private static readonly string s_admin = NewToken();

    private static string NewToken() => Convert.ToHexString(RandomNumberGenerator.GetBytes(32));

    private static string Sha256(string token) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));

    private static string AccessFile(bool withWriter = true) => $$"""
        {
          // Comments are allowed.
          "identities": [
            {{(withWriter ? $$"""{ "name": "writer", "token_sha256": "{{Sha256(s_writer)}}", "grants": [ { "topics": "orders.*", "allow": ["publish"] } ] },""" : "")}}
            { "name": "reader", "token_sha256": "{{Sha256(s_reader)}}", "grants": [ { "topics": "orders.*", "allow": ["subscribe"] } ] },
            { "name": "admin", "token_sha256": "{{Sha256(s_admin)}}", "grants": [ { "allow": ["publish", "subscribe", "purge", "redrive", "metrics"] } ] },
            { "name": "worker", "grants": [ { "topics": "jobs", "allow": ["publish", "subscribe"] } ] }
          ]
        }
        """;

    private static async Task<HostProcess> StartAsync(TempDirectory directory, params string[] more)
    {
        await File.WriteAllTextAsync(Path.Combine(directory.Path, "access.json"), AccessFile());
        var host = HostProcess.Start(directory.Path, ["-db", "data", "-level", "debug", "-auth", "access.json", .. more]);
        await host.WaitUntilReadyAsync();
        return host;
    }

    private static HttpClient Client(HostProcess host, string? token, Version? version = null)
    {
        var client = host.CreateHttpClient(host.GeneratedCertificate());
        client.DefaultRequestVersion = version ?? HttpVersion.Version20;
        if (token is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        return client;
    }

    /// <summary>Whether the host's log says <paramref name="text"/> within the bound (its console logger writes on a thread of its own).</summary>
    private static Task<bool> LoggedAsync(HostProcess host, string text) =>
        DurableTestSupport.EventuallyAsync(() => string.Join('\n', host.StandardError).Contains(text, StringComparison.Ordinal));

    private static async Task<HttpStatusCode> SendAsync(HttpClient client, HttpMethod method, string path)
    {
        using var request = new HttpRequestMessage(method, path)
        {
            Version = client.DefaultRequestVersion,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = method == HttpMethod.Get ? null : new StringContent("x"),
        };
        using var response = await client.SendAsync(request);
        return response.StatusCode;
    }

    [TestCase("2.0")]
    [TestCase("1.1")]
    public async Task EveryRouteButHealthz_NeedsAKnownToken(string version)
    {
        using var directory = new TempDirectory();
        await using var host = await StartAsync(directory);
        var http = Version.Parse(version);
        using var anonymous = Client(host, null, http);
        using var stranger = Client(host, NewToken(), http);

        foreach (var client in new[] { anonymous, stranger })
        {
            foreach (var (method, path) in new[]
            {
                (HttpMethod.Post, "publish/orders.a"), (HttpMethod.Post, "subscribe/orders.a"), (HttpMethod.Delete, "orders.a"),
                (HttpMethod.Post, "redrive/orders.a"), (HttpMethod.Get, "metrics"), (HttpMethod.Get, "elsewhere"), (HttpMethod.Post, "publish/%2F"),
            })
            {
                using var request = new HttpRequestMessage(method, path) { Version = http, VersionPolicy = HttpVersionPolicy.RequestVersionExact, Content = new StringContent("x") };
                using var response = await client.SendAsync(request);
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), $"{method} {path}");
                Assert.That(response.Headers.WwwAuthenticate.Single().Scheme, Is.EqualTo("Bearer"));
                Assert.That(await response.Content.ReadAsStringAsync(), Is.EqualTo("{\"error\":\"unauthorized\"}\n"));
            }
        }

        Assert.That(await SendAsync(anonymous, HttpMethod.Get, "healthz"), Is.EqualTo(HttpStatusCode.OK), "load balancers need it");
        using var admin = Client(host, s_admin, http);
        Assert.That(await SendAsync(admin, HttpMethod.Get, "metrics"), Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await LoggedAsync(host, "refused with 401"), Is.True, "refusals are logged");
    }

    [Test]
    public async Task EachToken_MayDoWhatItsGrantsSay_AndNothingElse()
    {
        using var directory = new TempDirectory();
        await using var host = await StartAsync(directory);
        using var writer = Client(host, s_writer);
        using var reader = Client(host, s_reader);
        using var admin = Client(host, s_admin);

        Assert.That(await SendAsync(writer, HttpMethod.Post, "publish/orders.new"), Is.EqualTo(HttpStatusCode.Created));
        Assert.That(await SendAsync(writer, HttpMethod.Post, "publish/payments"), Is.EqualTo(HttpStatusCode.Forbidden), "another topic");
        Assert.That(await SendAsync(writer, HttpMethod.Delete, "orders.new"), Is.EqualTo(HttpStatusCode.Forbidden), "another operation");
        Assert.That(await SendAsync(writer, HttpMethod.Post, "redrive/orders.new"), Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(await SendAsync(writer, HttpMethod.Get, "metrics"), Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(await SendAsync(writer, HttpMethod.Post, "subscribe/orders.new"), Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(await SendAsync(reader, HttpMethod.Post, "publish/orders.new"), Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(await SendAsync(reader, HttpMethod.Post, "subscribe/payments"), Is.EqualTo(HttpStatusCode.Forbidden));

        // The reader consumes what the writer published; nothing refused was done.
        await using (var stream = await RawConsumerStream.OpenAsync(reader, "subscribe/orders.new"))
        {
            await stream.SendAsync("\"INIT\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(RawConsumerStream.MessageLine("x")));
            await stream.SendAsync("\"ACK\"\n");
        }

        Assert.That(await SendAsync(admin, HttpMethod.Delete, "payments"), Is.EqualTo(HttpStatusCode.OK));
        Assert.That(await SendAsync(admin, HttpMethod.Post, "redrive/orders.new"), Is.EqualTo(HttpStatusCode.OK));
        var metrics = await admin.GetStringAsync("metrics");
        Assert.That(metrics, Does.Not.Contain("topic=\"payments\""), "the refused publish enqueued nothing");
    }

    [Test]
    public async Task ARemovedToken_IsRefusedOnceTheFileChanges_AndABadFileIsRefused_TheOldStaysInForce()
    {
        using var directory = new TempDirectory();
        await using var host = await StartAsync(directory);
        using var writer = Client(host, s_writer);
        using var admin = Client(host, s_admin);
        Assert.That(await SendAsync(writer, HttpMethod.Post, "publish/orders.a"), Is.EqualTo(HttpStatusCode.Created));

        // A bad file (an unknown operation) changes nothing.
        var path = Path.Combine(directory.Path, "access.json");
        await File.WriteAllTextAsync(path, AccessFile().Replace("\"purge\"", "\"purgee\"", StringComparison.Ordinal));
        Assert.That(await LoggedAsync(host, "was refused"), Is.True);
        Assert.That(await SendAsync(writer, HttpMethod.Post, "publish/orders.a"), Is.EqualTo(HttpStatusCode.Created));

        // The writer's entry goes (written beside and renamed over, as deploy tools do).
        await File.WriteAllTextAsync(path + ".new", AccessFile(withWriter: false));
        File.Move(path + ".new", path, overwrite: true);
        Assert.That(
            await DurableTestSupport.EventuallyAsync(async () => await SendAsync(writer, HttpMethod.Post, "publish/orders.a") == HttpStatusCode.Unauthorized),
            Is.True, "the removed token is still taken");

        Assert.That(await SendAsync(admin, HttpMethod.Post, "publish/orders.a"), Is.EqualTo(HttpStatusCode.Created), "the others keep working");
    }

    [Test]
    public async Task AnInvalidAccessFile_StopsTheHostAtTheStart_SayingWhatIsWrong()
    {
        using var directory = new TempDirectory();
        await File.WriteAllTextAsync(Path.Combine(directory.Path, "access.json"), """{ "identities": [ { "name": "x", "token_sha256": "abc", "grants": [] } ] }""");
        var (exitCode, error) = await HostProcess.RunToExitAsync(directory.Path, "-db", "data", "-auth", "access.json");
        Assert.That(exitCode, Is.EqualTo(2));
        Assert.That(error, Does.Contain("token_sha256 must be 64 hexadecimal digits"));
    }

    [Test]
    public async Task ClientCertificates_OfTheCa_AreTheirIdentity_OthersFailTheHandshake()
    {
        using var directory = new TempDirectory();
        using var authority = Authority("MiniQueue test CA");
        using var otherAuthority = Authority("Some other CA");
        await File.WriteAllTextAsync(Path.Combine(directory.Path, "ca.pem"), authority.ExportCertificatePem());
        await using var host = await StartAsync(directory, "-client-ca", "ca.pem");
        var trusted = host.GeneratedCertificate();

        HttpClient WithCertificate(X509Certificate2? certificate) => new(new SocketsHttpHandler
        {
            SslOptions =
            {
                RemoteCertificateValidationCallback = HostProcess.Trusting(trusted),
                ClientCertificates = certificate is null ? null : new X509CertificateCollection { certificate },
                LocalCertificateSelectionCallback = (_, _, _, _, _) => certificate!,
            },
        })
        {
            BaseAddress = host.BaseAddress,
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TestSupport.Bound,
        };

        using var worker = Issue(authority, "worker");
        using var stranger = Issue(authority, "stranger");
        using var forged = Issue(otherAuthority, "worker");
        using (var client = WithCertificate(worker))
        {
            Assert.That(await SendAsync(client, HttpMethod.Post, "publish/jobs"), Is.EqualTo(HttpStatusCode.Created));
            Assert.That(await SendAsync(client, HttpMethod.Post, "publish/orders.a"), Is.EqualTo(HttpStatusCode.Forbidden), "its grants only");
        }

        using (var client = WithCertificate(stranger))
        {
            Assert.That(await SendAsync(client, HttpMethod.Post, "publish/jobs"), Is.EqualTo(HttpStatusCode.Unauthorized), "a name the file does not know");
        }

        using (var client = WithCertificate(forged))
        {
            Assert.That(async () => await SendAsync(client, HttpMethod.Post, "publish/jobs"), Throws.InstanceOf<HttpRequestException>(), "another CA's certificate fails the handshake");
        }

        using (var client = WithCertificate(null))
        {
            Assert.That(await SendAsync(client, HttpMethod.Post, "publish/jobs"), Is.EqualTo(HttpStatusCode.Unauthorized));
            Assert.That(await SendAsync(client, HttpMethod.Get, "healthz"), Is.EqualTo(HttpStatusCode.OK));
        }
    }

    [Test]
    public async Task OverTheRate_RequestsAre429WithRetryAfter_AndHealthzIsNeverLimited()
    {
        using var directory = new TempDirectory();
        await using var host = await StartAsync(directory, "-rate", "5");
        using var admin = Client(host, s_admin);
        var statuses = new List<HttpStatusCode>();
        string? retryAfter = null;
        for (var i = 0; i < 20; i++)
        {
            using var response = await admin.PostAsync("publish/orders.a", new StringContent("x"));
            statuses.Add(response.StatusCode);
            retryAfter ??= response.Headers.RetryAfter?.ToString();
        }

        Assert.That(statuses.Count(static status => status == HttpStatusCode.Created), Is.InRange(5, 10), "a burst of 5, then 5 a second");
        Assert.That(statuses.Count(static status => status == HttpStatusCode.TooManyRequests), Is.GreaterThanOrEqualTo(10));
        Assert.That(int.Parse(retryAfter!, CultureInfo.InvariantCulture), Is.GreaterThanOrEqualTo(1));
        using var anonymous = Client(host, null);
        for (var i = 0; i < 20; i++)
        {
            Assert.That(await SendAsync(anonymous, HttpMethod.Get, "healthz"), Is.EqualTo(HttpStatusCode.OK));
        }

        // A peer without credentials is limited by its address (its 401s count).
        var refusals = new List<HttpStatusCode>();
        for (var i = 0; i < 20; i++)
        {
            refusals.Add(await SendAsync(anonymous, HttpMethod.Post, "publish/orders.a"));
        }

        Assert.That(refusals, Has.Some.EqualTo(HttpStatusCode.Unauthorized).And.Some.EqualTo(HttpStatusCode.TooManyRequests));

        Assert.That(await LoggedAsync(host, "refused with 429"), Is.True);
    }

    [Test]
    public async Task ConsumersOverTheTopicsLimit_Are429_UntilOneEnds()
    {
        using var directory = new TempDirectory();
        await using var host = await StartAsync(directory, "-max-consumers", "2");
        using var admin = Client(host, s_admin);
        var first = await RawConsumerStream.OpenAsync(admin, "subscribe/jobs");
        await using var second = await RawConsumerStream.OpenAsync(admin, "subscribe/jobs");
        await using var otherTopic = await RawConsumerStream.OpenAsync(admin, "subscribe/other");
        using (var response = await admin.PostAsync("subscribe/jobs", new StringContent("")))
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
            Assert.That(await response.Content.ReadAsStringAsync(), Is.EqualTo("{\"error\":\"too many consumers\"}\n"));
        }

        await first.DisposeAsync();
        Assert.That(
            await DurableTestSupport.EventuallyAsync(async () =>
            {
                await using var third = await RawConsumerStream.OpenAsync(admin, "subscribe/jobs");
                return third.Response.StatusCode == HttpStatusCode.OK;
            }),
            Is.True, "the ended stream still counts");

        Assert.That(await LoggedAsync(host, "consumer streams already"), Is.True);
    }

    [Test]
    public async Task AConnectionThatNeverStartsItsHandshake_IsClosed()
    {
        using var directory = new TempDirectory();
        await using var host = await StartAsync(directory, "-handshake-timeout", "1s");
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, host.Port);
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        var read = await socket.ReceiveAsync(new byte[16], System.Net.Sockets.SocketFlags.None, timeout.Token);
        Assert.That(read, Is.Zero, "the server closed it");
        Assert.That(await LoggedAsync(host, "HTTPS connection timed out"), Is.True, "and logged it");
    }

    [Test]
    public async Task AnIdleConnection_IsClosedAfterTheIdleTimeout()
    {
        using var directory = new TempDirectory();
        await using var host = await StartAsync(directory, "-idle-timeout", "1s");
        var trusted = host.GeneratedCertificate();
        await using var connection = await RawHttp1Connection.OpenAsync(host.BaseAddress, HostProcess.Trusting(trusted));
        await connection.SendAsync($"POST /publish/orders.a HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {s_admin}\r\nContent-Length: 1\r\n\r\nx");
        Assert.That((await connection.ReadResponseAsync())?.StatusCode, Is.EqualTo(201));

        // Nothing more is sent: the server closes the connection (the read sees its end within the test's bound).
        Assert.That(await connection.ReadResponseAsync(), Is.Null);
    }

    [Test]
    public async Task ConnectionsOverTheLimit_AreClosed_UntilOneEnds()
    {
        using var directory = new TempDirectory();
        await using var host = await StartAsync(directory, "-max-connections", "2");
        var trusted = host.GeneratedCertificate();
        var validation = HostProcess.Trusting(trusted);
        // The readiness check's connection may still count for a moment after it closed: each connection is tried
        // until the server takes it.
        async Task<RawHttp1Connection> OpenAsync()
        {
            var deadline = DateTime.UtcNow + TestSupport.Bound;
            while (true)
            {
                try
                {
                    return await RawHttp1Connection.OpenAsync(host.BaseAddress, validation);
                }
                catch (Exception exception) when (exception is IOException or System.Security.Authentication.AuthenticationException && DateTime.UtcNow < deadline)
                {
                    await Task.Delay(100);
                }
            }
        }

        var first = await OpenAsync();
        await using var second = await OpenAsync();
        Assert.That(async () => await (await RawHttp1Connection.OpenAsync(host.BaseAddress, validation)).DisposeAsync(), Throws.Exception, "a third connection");
        Assert.That(await LoggedAsync(host, "maximum number of concurrent connections"), Is.True, "logged");

        await first.DisposeAsync();
        await using var third = await OpenAsync();
        await third.SendAsync($"POST /publish/orders.a HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {s_admin}\r\nContent-Length: 1\r\n\r\nx");
        Assert.That((await third.ReadResponseAsync())?.StatusCode, Is.EqualTo(201));
    }

    [Test]
    public async Task APublishBodyThatStalls_IsEnded_AndPublishesNothing()
    {
        using var directory = new TempDirectory();
        await using var host = await StartAsync(directory);
        var trusted = host.GeneratedCertificate();
        await using (var stalled = await RawHttp1Connection.OpenAsync(host.BaseAddress, HostProcess.Trusting(trusted)))
        {
            // 10 of the 100,000 bytes it announces, then nothing: under Kestrel's minimum rate (240 B/s after 5 s).
            await stalled.SendAsync($"POST /publish/orders.a HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {s_admin}\r\nContent-Length: 100000\r\n\r\n0123456789");
            var response = await stalled.ReadResponseAsync();
            Assert.That(response?.StatusCode ?? 0, Is.AnyOf(0, 408, 400), "ended: closed or answered with an error");
        }

        using var admin = Client(host, s_admin);
        Assert.That(await SendAsync(admin, HttpMethod.Post, "publish/orders.a"), Is.EqualTo(HttpStatusCode.Created));
        await using var stream = await RawConsumerStream.OpenAsync(admin, "subscribe/orders.a");
        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(RawConsumerStream.MessageLine("x")), "the stalled publish left nothing before it");
    }

    [Test]
    public async Task StreamsOverTheLimitOfAConnection_WaitForOneToEnd()
    {
        using var directory = new TempDirectory();
        await using var host = await StartAsync(directory, "-max-streams", "2");
        using var admin = Client(host, s_admin);
        var first = await RawConsumerStream.OpenAsync(admin, "subscribe/jobs");
        await using var second = await RawConsumerStream.OpenAsync(admin, "subscribe/jobs");

        // The server told the client (SETTINGS_MAX_CONCURRENT_STREAMS) that this connection carries 2 at once.
        var third = RawConsumerStream.OpenAsync(admin, "subscribe/jobs");
        await Task.Delay(500);
        Assert.That(third.IsCompleted, Is.False, "a third stream waits on this connection");

        await first.DisposeAsync();
        await using var opened = await third.WaitAsync(TestSupport.Bound);
        Assert.That(opened.Response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task APublishOverTheTopicLimit_Is429_AndTheOtherTopicsGoOn()
    {
        using var directory = new TempDirectory();
        await using var host = await StartAsync(directory, "-max-topics", "2");
        using var admin = Client(host, s_admin);
        Assert.That(await SendAsync(admin, HttpMethod.Post, "publish/one"), Is.EqualTo(HttpStatusCode.Created));
        Assert.That(await SendAsync(admin, HttpMethod.Post, "publish/two"), Is.EqualTo(HttpStatusCode.Created));
        using (var response = await admin.PostAsync("publish/three", new StringContent("x")))
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.TooManyRequests));
            Assert.That(await response.Content.ReadAsStringAsync(), Is.EqualTo("{\"error\":\"too many topics\"}\n"));
        }

        Assert.That(await SendAsync(admin, HttpMethod.Post, "publish/one"), Is.EqualTo(HttpStatusCode.Created));
        Assert.That(await LoggedAsync(host, "over the maximum"), Is.True);
    }

    [Test]
    public async Task HeadersOverTheLimit_AreRefused_AndTheServerGoesOn()
    {
        using var directory = new TempDirectory();
        await using var host = await StartAsync(directory, "-max-header-bytes", "4096");
        using var admin = Client(host, s_admin, HttpVersion.Version11);
        using (var request = new HttpRequestMessage(HttpMethod.Post, "publish/orders.a") { Version = HttpVersion.Version11, Content = new StringContent("x") })
        {
            request.Headers.Add("X-Padding", new string('p', 8000));
            using var response = await admin.SendAsync(request);
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.RequestHeaderFieldsTooLarge));
        }

        Assert.That(await LoggedAsync(host, "Request headers too long"), Is.True, "logged");

        Assert.That(await SendAsync(admin, HttpMethod.Post, "publish/orders.a"), Is.EqualTo(HttpStatusCode.Created));
    }

    [Test]
    public async Task ARenewedCertificate_IsServedToNewConnections_WithoutARestart()
    {
        using var directory = new TempDirectory();
        using var first = SelfSigned("localhost");
        await File.WriteAllTextAsync(Path.Combine(directory.Path, "cert.pem"), first.ExportCertificatePem());
        await File.WriteAllTextAsync(Path.Combine(directory.Path, "key.pem"), first.GetRSAPrivateKey()!.ExportPkcs8PrivateKeyPem());
        await using var host = HostProcess.Start(directory.Path, "-db", "data", "-cert", "cert.pem", "-key", "key.pem");
        await host.WaitUntilReadyAsync(first);

        using var second = SelfSigned("localhost");
        await File.WriteAllTextAsync(Path.Combine(directory.Path, "key.pem"), second.GetRSAPrivateKey()!.ExportPkcs8PrivateKeyPem());
        await File.WriteAllTextAsync(Path.Combine(directory.Path, "cert.pem"), second.ExportCertificatePem());
        Assert.That(
            await DurableTestSupport.EventuallyAsync(async () =>
            {
                try
                {
                    using var client = host.CreateHttpClient(second);
                    using var response = await client.GetAsync("healthz");
                    return response.StatusCode == HttpStatusCode.OK;
                }
                catch (HttpRequestException)
                {
                    // The old certificate, which this client does not trust.
                    return false;
                }
            }),
            Is.True, "new connections get the renewed certificate");
    }

    [Test]
    public async Task TlsBelow12_IsRefused_EvenWhereTheSystemWouldAllowIt()
    {
        if (!File.Exists("/usr/bin/openssl"))
        {
            Assert.Ignore("needs /usr/bin/openssl (a client that can still speak TLS 1.1)");
        }

        // Debian's OpenSSL refuses TLS below 1.2 by itself; this configuration allows it to both server and client, so
        // that only the host's own setting stands between a TLS 1.1 client and the server.
        using var directory = new TempDirectory();
        var weak = Path.Combine(directory.Path, "weak-openssl.cnf");
        await File.WriteAllTextAsync(weak, """
            openssl_conf = openssl_init
            [openssl_init]
            ssl_conf = ssl_sect
            [ssl_sect]
            system_default = system_default_sect
            [system_default_sect]
            MinProtocol = TLSv1
            CipherString = DEFAULT@SECLEVEL=0
            """);
        var environment = new Dictionary<string, string> { ["OPENSSL_CONF"] = weak };
        await using var host = HostProcess.Start(directory.Path, environment, "-db", "data");
        await host.WaitUntilReadyAsync();

        async Task<string> HandshakeAsync(string version)
        {
            var start = new System.Diagnostics.ProcessStartInfo("/usr/bin/openssl")
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (var argument in new[] { "s_client", "-connect", $"127.0.0.1:{host.Port}", version })
            {
                start.ArgumentList.Add(argument);
            }

            start.Environment["OPENSSL_CONF"] = weak;
            using var client = System.Diagnostics.Process.Start(start)!;
            client.StandardInput.Close();
            var output = client.StandardOutput.ReadToEndAsync();
            var error = client.StandardError.ReadToEndAsync();
            await client.WaitForExitAsync().WaitAsync(TestSupport.Bound);
            return await output + await error;
        }

        Assert.That(await HandshakeAsync("-tls1_2"), Does.Match(@"New, TLSv1\.2, Cipher is [A-Z]"), "the client's configuration works");
        var old = await HandshakeAsync("-tls1_1");
        Assert.That(old, Does.Contain("Cipher is (NONE)"), old);
        Assert.That(old, Does.Contain("alert protocol version"), old);
    }

    private static X509Certificate2 SelfSigned(string name)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName(name);
        request.CertificateExtensions.Add(san.Build());
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
    }

    private static X509Certificate2 Authority(string name)
    {
        // The key stays with the certificate (it signs the certificates Issue makes).
        var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
    }

    private static X509Certificate2 Issue(X509Certificate2 authority, string name)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], false));
        using var issued = request.Create(authority, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(7), RandomNumberGenerator.GetBytes(8));
        return X509CertificateLoader.LoadPkcs12(issued.CopyWithPrivateKey(key).Export(X509ContentType.Pkcs12), null);
    }
}
