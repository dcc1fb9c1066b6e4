using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using MiniQueue.Tests.Http;
using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Host;

/// <summary>The standalone host as a real process: flags, TLS, logs, metrics, health, shutdown, durability across restarts.</summary>
[CancelAfter(120_000)]
public sealed class HostTests
{
    private static readonly string[] s_usageLines =
    [
        "Usage of miniqueue:",
        "  -cert string",
        "    \tpath to TLS certificate (default \"./testdata/localhost.pem\")",
        "  -db string",
        "    \tpath to the data directory (default \"./data\")",
        "  -human",
        "    \thuman readable logging output",
        "  -key string",
        "    \tpath to TLS key (default \"./testdata/localhost-key.pem\")",
        "  -level string",
        "    \t(disabled|debug|info|warn|error) (default \"debug\")",
        "  -period duration",
        "    \tperiod between runs to check and restore delayed messages (default 1s)",
        "  -port int",
        "    \tport used to run the server (default 8080)",
    ];

    [TestCase("-h")]
    [TestCase("-help")]
    [TestCase("--help")]
    public async Task Help_PrintsTheUsageInTheOriginalsFormat_AndExitsZero(string flag)
    {
        using var directory = new TempDirectory();

        var (exitCode, error) = await HostProcess.RunToExitAsync(directory.Path, flag);

        Assert.That(exitCode, Is.Zero);
        var lines = error.Split('\n');
        Assert.That(lines[0], Is.EqualTo("Usage of miniqueue:"));
        Assert.That(lines, Is.SupersetOf(s_usageLines), "every original flag, with its wording and default");
        Assert.That(lines, Does.Contain("  -h2c"));
    }

    [TestCase(new[] { "-nope" }, "flag provided but not defined: -nope")]
    [TestCase(new[] { "-port", "abc" }, "invalid value \"abc\" for flag -port: parse error")]
    [TestCase(new[] { "-port=70000" }, "invalid value \"70000\" for flag -port: out of range (0..65535)")]
    [TestCase(new[] { "-period", "5" }, "invalid value \"5\" for flag -period: parse error (missing unit)")]
    [TestCase(new[] { "--period=0s" }, "invalid value \"0s\" for flag -period: must be positive")]
    [TestCase(new[] { "-lease", "0s" }, "invalid value \"0s\" for flag -lease: must be positive")]
    [TestCase(new[] { "-max-deliveries", "0" }, "invalid value \"0\" for flag -max-deliveries: out of range (1..2147483647)")]
    [TestCase(new[] { "-level", "loud" }, "invalid value \"loud\" for flag -level: want disabled, debug, info, warn or error")]
    [TestCase(new[] { "-human=maybe" }, "invalid boolean value \"maybe\" for -human: parse error")]
    [TestCase(new[] { "-metrics-topic-limit=-1" }, "invalid value \"-1\" for flag -metrics-topic-limit: out of range (0..2147483647)")]
    [TestCase(new[] { "-port" }, "flag needs an argument: -port")]
    [TestCase(new[] { "-cert", "missing.pem" }, "invalid value \"missing.pem\" for flag -cert: no such file")]
    [TestCase(new[] { "stray" }, "unexpected argument: stray (flags start with -)")]
    public async Task ABadCommandLine_GivesOneLineNamingTheFlag_ThenTheUsage_AndExitCode2(string[] arguments, string message)
    {
        using var directory = new TempDirectory();

        var (exitCode, error) = await HostProcess.RunToExitAsync(directory.Path, arguments);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(exitCode, Is.EqualTo(2));
            Assert.That(error.Split('\n')[0], Is.EqualTo(message));
            Assert.That(error.Split('\n')[1], Is.EqualTo("Usage of miniqueue:"));
        }
    }

    [TestCase("-port", "{0}", "-db", "data")]
    [TestCase("-port={0}", "-db=data")]
    [TestCase("--port", "{0}", "--db", "data")]
    [TestCase("--port={0}", "--db=data")]
    public async Task FlagsInEveryGoStyle_AreAccepted(params string[] template)
    {
        using var directory = new TempDirectory();
        var port = HostProcess.FreePort();
        var arguments = template.Select(a => string.Format(System.Globalization.CultureInfo.InvariantCulture, a, port)).ToArray();
        await using var host = HostProcess.Start(directory.Path, arguments);

        await host.WaitUntilReadyAsync();

        Assert.That(host.Port, Is.EqualTo(port));
    }

    [Test]
    public async Task WithoutTheDefaultCertificate_TheHostMakesOne_InTheDataDirectory_ThatCurlTrusts()
    {
        using var directory = new TempDirectory();
        await using var host = HostProcess.Start(directory.Path, "-db", "data");
        await host.WaitUntilReadyAsync();
        var certificate = Path.Combine(directory.Path, "data", "tls", "localhost.pem");

        var publish = await CurlAsync("--http2", "--cacert", certificate, "-X", "POST", "--data-binary", "from curl",
            "-o", "/dev/null", "-w", "%{http_code} %{http_version}", $"https://localhost:{host.Port}/publish/curl");
        var viaIp = await CurlAsync("--http2", "--cacert", certificate, "-X", "DELETE", "-o", "/dev/null", "-w", "%{http_code}", $"https://127.0.0.1:{host.Port}/curl");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(publish, Is.EqualTo("201 2"), "HTTP/2 over TLS, trusted with --cacert");
            Assert.That(viaIp, Is.EqualTo("200"), "the certificate covers 127.0.0.1 too; purge is served at the root");
            Assert.That(host.StandardError.Any(line => line.Contains("self-signed", StringComparison.Ordinal) && line.Contains("\"Warning\"", StringComparison.Ordinal)), Is.True,
                "a warning says where the certificate is");
        }
    }

    [Test]
    public async Task Logs_AreOneJsonObjectPerLineOnStderr_OrReadableLinesWithHuman()
    {
        using var directory = new TempDirectory();
        await using (var host = HostProcess.Start(directory.Path, "-db", "json"))
        {
            await host.WaitUntilReadyAsync(dataDirectory: "json");
            var lines = host.StandardError;
            Assert.That(lines, Is.Not.Empty);
            foreach (var line in lines)
            {
                using var json = JsonDocument.Parse(line);
                Assert.That(json.RootElement.TryGetProperty("LogLevel", out _) && json.RootElement.TryGetProperty("Timestamp", out _) && json.RootElement.TryGetProperty("Message", out _),
                    Is.True, line);
            }
        }

        await using var human = HostProcess.Start(directory.Path, "-db", "human", "-human", "-level", "info");
        await human.WaitUntilReadyAsync(dataDirectory: "human");
        Assert.That(human.StandardError.Any(line => line.Contains("info: MiniQueue.Host[3002] starting miniqueue over HTTP/2", StringComparison.Ordinal)), Is.True,
            string.Join('\n', human.StandardError));
    }

    [Test]
    public async Task LevelDisabled_LogsNothing()
    {
        using var directory = new TempDirectory();
        await using var host = HostProcess.Start(directory.Path, "-db", "data", "-level", "disabled");
        await host.WaitUntilReadyAsync();
        using var client = host.CreateHttpClient(host.GeneratedCertificate());
        using var response = await client.PostAsync("publish/t", new StringContent("x"));

        Assert.That(host.StandardError, Is.Empty);
    }

    [Test]
    public async Task Metrics_ShowTheEnginesAndTheServersCounters_AfterTraffic()
    {
        using var directory = new TempDirectory();
        await using var host = HostProcess.Start(directory.Path, "-db", "data");
        await host.WaitUntilReadyAsync();
        var certificate = host.GeneratedCertificate();
        using var client = host.CreateClient(certificate);
        for (var i = 0; i < 3; i++)
        {
            await client.PublishAsync("metered", Encoding.UTF8.GetBytes($"m{i}"));
        }

        await using (var subscription = await client.SubscribeAsync("metered"))
        {
            await subscription.ReceiveAsync();
            await subscription.AckAsync();
            await subscription.ReceiveAsync();
            await subscription.NackAsync();
            await subscription.ReceiveAsync();
        }

        // Observable gauges (ready, held) are sampled by the exporter, and the held message returns when the server
        // sees the stream end: scrape until the sample has caught up.
        using var http = host.CreateHttpClient(certificate);
        var deadline = DateTime.UtcNow + TestSupport.Bound;
        string text;
        while (!Regex.IsMatch(text = await http.GetStringAsync("metrics"), "miniqueue_messages_ready\\{topic=\"metered\"\\} 2") && DateTime.UtcNow < deadline)
        {
            await Task.Delay(100);
        }

        using (Assert.EnterMultipleScope())
        {
            // prometheus-net exports .NET counters as gauges, without the _total suffix.
            Assert.That(text, Does.Contain("miniqueue_messages_published{topic=\"metered\"} 3"));
            Assert.That(text, Does.Contain("miniqueue_messages_acked{topic=\"metered\"} 1"));
            Assert.That(text, Does.Contain("miniqueue_messages_nacked{topic=\"metered\"} 2"), "a NACK and the held message returned at the end");
            Assert.That(text, Does.Contain("miniqueue_messages_delivered{topic=\"metered\"} 3"));
            Assert.That(text, Does.Match("miniqueue_messages_ready\\{topic=\"metered\"\\} 2"));
            Assert.That(text, Does.Match("miniqueue_publish_duration_bucket\\{le=\"0.0001\"\\} [0-9]"), "sub-millisecond buckets");
            Assert.That(text, Does.Contain("miniqueue_publish_duration_count 3"));
            Assert.That(text, Does.Contain("miniqueue_commit_duration"));
            Assert.That(text, Does.Match("miniqueue_log_size [1-9]"));
            Assert.That(text, Does.Match("microsoft_aspnetcore_hosting_http_server_request_duration_count\\{[^}]*http_route=\"/publish/\\{topic\\}\"[^}]*http_response_status_code=\"201\"[^}]*\\} 3"),
                "ASP.NET Core's own HTTP meter, by route and status");
            Assert.That(text, Does.Not.Contain("aspnetcore_memory_pool"), "instruments recorded per buffer are not exported");
            Assert.That(text, Does.Contain("system_runtime_dotnet_gc_collections"), "the runtime's meter");
            Assert.That(text, Does.Contain("microsoft_aspnetcore_server_kestrel_kestrel_active_connections"), "Kestrel's own meters");
        }
    }

    [Test]
    public async Task Metrics_StaySmall_WithManyTopics_KeepTheBusiestTopicsNamed_AndAGoneTopicLeaves()
    {
        // Before the limit, every topic had a series in every instrument and a histogram: 2,000 topics made ~54,000
        // lines. Now at most 20 topics are named, and the rest are summed under topic="/other".
        const int topics = 2000;
        const int limit = 20;
        using var directory = new TempDirectory();
        await using var host = HostProcess.Start(directory.Path, "-db", "data", "-commit", "interval", "-level", "warn", "-metrics-topic-limit", limit.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await host.WaitUntilReadyAsync();
        var certificate = host.GeneratedCertificate();
        using var client = host.CreateClient(certificate);
        using var http = host.CreateHttpClient(certificate);
        await Parallel.ForEachAsync(
            Enumerable.Range(0, topics),
            new ParallelOptions { MaxDegreeOfParallelism = 16 },
            async (i, cancellationToken) => await client.PublishAsync($"many-{i}", Encoding.UTF8.GetBytes("x"), cancellationToken));
        var busy = Enumerable.Range(0, 5).Select(static i => $"busy-{i}").ToArray();
        foreach (var topic in busy)
        {
            for (var i = 0; i < 10; i++)
            {
                await client.PublishAsync(topic, Encoding.UTF8.GetBytes("x"));
            }
        }

        var text = await http.GetStringAsync("metrics");
        var topicLines = text.Split('\n').Where(static line => line.Contains("topic=\"", StringComparison.Ordinal)).ToArray();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(topicLines, Has.Length.LessThanOrEqualTo(14 * (limit + 1)), "14 per-topic instruments, each at most 20 topics and /other");
            Assert.That(text, Does.Not.Contain("miniqueue_publish_duration_bucket{topic="), "publish.duration has no topic");
            foreach (var topic in busy)
            {
                Assert.That(text, Does.Contain($"miniqueue_messages_published{{topic=\"{topic}\"}} 10"));
            }

            Assert.That(text, Does.Contain($"miniqueue_messages_ready{{topic=\"/other\"}} {topics - (limit - busy.Length)}"));
            Assert.That(SumOf(text, "miniqueue_messages_published"), Is.EqualTo(topics + (10 * busy.Length)), "the sum over the labels is every publish");
        }

        // A purged topic (no messages, no consumers) leaves /metrics; its count stays in the sum, under /other.
        using var purge = await http.DeleteAsync("busy-0");
        Assert.That(purge.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        var deadline = DateTime.UtcNow + TestSupport.Bound;
        while ((text = await http.GetStringAsync("metrics")).Contains("topic=\"busy-0\"", StringComparison.Ordinal) && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(text, Does.Not.Contain("topic=\"busy-0\""));
            Assert.That(text, Does.Contain("miniqueue_messages_published{topic=\"busy-1\"} 10"));
            Assert.That(SumOf(text, "miniqueue_messages_published"), Is.EqualTo(topics + (10 * busy.Length)));
        }
    }

    /// <summary>The sum of a metric's values over all its labels, in Prometheus text format.</summary>
    private static double SumOf(string metrics, string name) =>
        metrics.Split('\n')
            .Where(line => line.StartsWith(name + "{", StringComparison.Ordinal))
            .Sum(static line => double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));

    [Test]
    public async Task Publish_WithAMalformedChunkedBody_Is400_AndEnqueuesNothing()
    {
        using var directory = new TempDirectory();
        await using var host = HostProcess.Start(directory.Path, "-db", "data");
        await host.WaitUntilReadyAsync();
        var certificate = host.GeneratedCertificate();
        using var client = host.CreateClient(certificate);

        RawHttp1Response? response;
        await using (var connection = await RawHttp1Connection.OpenAsync(
            host.BaseAddress, (_, presented, _, _) => presented is not null && presented.GetCertHashString() == certificate.GetCertHashString()))
        {
            // HTTP/1.1 with a chunk size that overflows: Kestrel fails the read with an IOException of its own.
            await connection.SendAsync("POST /publish/framed HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nbad\r\n0\r\n\r\n");
            response = await connection.ReadResponseAsync();
        }

        await client.PublishAsync("framed", Encoding.UTF8.GetBytes("good"));
        await using var subscription = await client.SubscribeAsync("framed");
        var first = await subscription.ReceiveAsync();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(response?.StatusCode, Is.EqualTo(400));
            Assert.That(response?.Body, Is.EqualTo("{\"error\":\"invalid request body\"}\n"));
            Assert.That(Encoding.UTF8.GetString(first.Body.Span), Is.EqualTo("good"), "the refused publish enqueued nothing ahead of it");
        }
    }

    [Test]
    public async Task Healthz_IsOk_AndNeitherItNorMetricsCollidesWithPurge()
    {
        using var directory = new TempDirectory();
        await using var host = HostProcess.Start(directory.Path, "-db", "data");
        await host.WaitUntilReadyAsync();
        using var http = host.CreateHttpClient(host.GeneratedCertificate());
        await http.PostAsync("publish/healthz", new StringContent("a topic named healthz"));

        using var health = await http.GetAsync("healthz");
        using var metrics = await http.GetAsync("metrics");
        using var purge = await http.DeleteAsync("healthz");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(health.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(await health.Content.ReadAsStringAsync(), Is.EqualTo("Healthy"));
            Assert.That(metrics.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(purge.StatusCode, Is.EqualTo(HttpStatusCode.OK), "DELETE /healthz purges the topic healthz");
        }
    }

    [TestCase("SIGTERM")]
    [TestCase("SIGINT")]
    public async Task Shutdown_EndsStreams_ReturnsHeldMessages_CommitsAndExitsZero_AndARestartHasEverything(string signal)
    {
        using var directory = new TempDirectory();
        var port = HostProcess.FreePort();
        await using (var host = HostProcess.Start(directory.Path, "-db", "data", "-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture)))
        {
            await host.WaitUntilReadyAsync();
            using var client = host.CreateClient(host.GeneratedCertificate());
            await client.PublishAsync("survivor", Encoding.UTF8.GetBytes("held at shutdown"));
            await client.PublishAsync("survivor", Encoding.UTF8.GetBytes("queued"));
            await using var subscription = await client.SubscribeAsync("survivor");
            Assert.That(Encoding.UTF8.GetString((await subscription.ReceiveAsync()).Body.Span), Is.EqualTo("held at shutdown"));

            var stopping = Stopwatch.StartNew();
            if (signal == "SIGTERM")
            {
                host.Terminate();
            }
            else
            {
                host.Interrupt();
            }

            Assert.That(await host.WaitForExitAsync(), Is.Zero, string.Join('\n', host.StandardError));
            Assert.That(stopping.Elapsed, Is.LessThan(TestSupport.Bound), "the open stream did not hold the shutdown up");
        }

        await using var restarted = HostProcess.Start(directory.Path, "-db", "data", "-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await restarted.WaitUntilReadyAsync();
        using var again = restarted.CreateClient(restarted.GeneratedCertificate());
        await using var reader = await again.SubscribeAsync("survivor");
        var first = await reader.ReceiveAsync();
        await reader.AckAsync();
        var second = await reader.ReceiveAsync();

        Assert.That(
            new[] { Encoding.UTF8.GetString(first.Body.Span), Encoding.UTF8.GetString(second.Body.Span) },
            Is.EqualTo(new[] { "held at shutdown", "queued" }));
    }

    [Test]
    public async Task H2c_ServesCleartextHttp2()
    {
        using var directory = new TempDirectory();
        await using var host = HostProcess.Start(directory.Path, "-db", "data", "-h2c");
        var deadline = DateTime.UtcNow + TestSupport.Bound;
        string status;
        do
        {
            await Task.Delay(100);
            status = await CurlAsync("--http2-prior-knowledge", "-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                "-X", "POST", "--data-binary", "plain", $"http://127.0.0.1:{host.Port}/publish/h2c", true);
        }
        while (status != "201 2" && DateTime.UtcNow < deadline && !host.HasExited);

        Assert.That(status, Is.EqualTo("201 2"));
        Assert.That(File.Exists(Path.Combine(directory.Path, "data", "tls", "localhost.pem")), Is.False, "no certificate is made for h2c");
    }

    [Test]
    public async Task AnUnusableDataDirectory_StopsTheHostWithExitCode1_AndSaysWhy()
    {
        using var directory = new TempDirectory();
        Directory.CreateDirectory(Path.Combine(directory.Path, "data"));
        await File.WriteAllTextAsync(Path.Combine(directory.Path, "data", "manifest.json"), "not json");
        await File.WriteAllTextAsync(Path.Combine(directory.Path, "cert-made-by-the-test"), "");

        await using var host = HostProcess.Start(directory.Path, "-db", "data", "-level", "error");
        var exitCode = await host.WaitForExitAsync();

        Assert.That(exitCode, Is.EqualTo(1));
        Assert.That(string.Join('\n', host.StandardError), Does.Contain("manifest.json is not a MiniQueue manifest"));
    }

    [Test]
    public async Task AConsumerProcessKilled_WhileHoldingAMessage_ReturnsItToTheTopic()
    {
        using var directory = new TempDirectory();
        await using var host = HostProcess.Start(directory.Path, "-db", "data");
        await host.WaitUntilReadyAsync();
        var certificate = host.GeneratedCertificate();
        using var client = host.CreateClient(certificate);
        await client.PublishAsync("killed", Encoding.UTF8.GetBytes("held by a process that dies"));

        // curl as the consumer: "INIT" through a request body that stays open (-T . streams stdin as it comes), so it
        // holds the message until it is killed.
        using (var curl = StartCurl(
            writesInput: true,
            "-sSN", "--http2", "--cacert", Path.Combine(directory.Path, "data", "tls", "localhost.pem"),
            "-T", ".", "-X", "POST", $"https://localhost:{host.Port}/subscribe/killed"))
        {
            try
            {
                await curl.StandardInput.WriteAsync("\"INIT\"\n");
                await curl.StandardInput.FlushAsync();
                var line = await curl.StandardOutput.ReadLineAsync().WaitAsync(TestSupport.Bound);
                Assert.That(line, Is.EqualTo($"{{\"msg\":\"{Convert.ToBase64String(Encoding.UTF8.GetBytes("held by a process that dies"))}\"}}"));
            }
            finally
            {
                curl.Kill();   // SIGKILL: the kernel closes its socket, no HTTP/2 frame says goodbye
            }

            await curl.WaitForExitAsync().WaitAsync(TestSupport.Bound);
        }

        // Nothing else is in the topic, so this consumer gets the message only if the server gave it back.
        await using var subscription = await client.SubscribeAsync("killed");
        var message = await subscription.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
        Assert.That(Encoding.UTF8.GetString(message.Body.Span), Is.EqualTo("held by a process that dies"));
        await subscription.AckAsync();
    }

    /// <summary>Starts curl with its output captured (and its input, when the test writes to it); ignores the test without curl.</summary>
    private static Process StartCurl(bool writesInput, params string[] arguments)
    {
        var start = new ProcessStartInfo("curl") { RedirectStandardInput = writesInput, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        try
        {
            return Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            Assert.Ignore("curl is not installed (.ci/run installs it)");
            throw;
        }
    }

    private static async Task<string> CurlAsync(params object[] arguments)
    {
        var allowFailure = arguments.LastOrDefault() is true;
        using (var curl = StartCurl(writesInput: false, ["-sS", "--max-time", "20", .. arguments.OfType<string>()]))
        {
            var output = await curl.StandardOutput.ReadToEndAsync();
            var error = await curl.StandardError.ReadToEndAsync();
            await curl.WaitForExitAsync().WaitAsync(TestSupport.Bound);
            if (curl.ExitCode != 0 && !allowFailure)
            {
                Assert.Fail($"curl failed ({curl.ExitCode}): {error}");
            }

            return output;
        }
    }
}
