using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Reflection;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using MiniQueue.Client;
using MiniQueue.Tests.Host;
using MiniQueue.Tests.Http;
using MiniQueue.Tests.PostgreSql;

namespace MiniQueue.Tests.Samples;

/// <summary>
/// The sample app under samples/MiniQueue.Sample, as a user gets it: the libraries are packed into a folder feed, the
/// sample is restored from that feed (never from project references) and built in a folder of its own, then run on a
/// loopback port and used over HTTP/2 with and without the shop's credentials.
/// </summary>
[CancelAfter(600_000)]
[Category("Packages")]
public sealed class SampleAppTests
{
    private static readonly TimeSpan s_buildBound = TimeSpan.FromMinutes(5);
    private string _work = "";
    private string _version = "";

    [OneTimeSetUp]
    public void CreateWorkFolder()
    {
        _work = Directory.CreateTempSubdirectory("miniqueue-sample-").FullName;
        _version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
    }

    [OneTimeTearDown]
    public void DeleteWorkFolder()
    {
        TryDelete(_work);

        // The unique version's copies in the NuGet cache are of no use to anyone else.
        var cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        foreach (var id in new[] { "miniqueue.core", "miniqueue.http", "miniqueue.client", "miniqueue.postgresql" })
        {
            TryDelete(Path.Combine(cache, id, _version));
        }
    }

    [Test]
    public async Task TheSample_BuiltFromThePackedLibraries_ServesTheQueueBehindItsOwnAuthorization_AndItsWorkerConsumesInProcess()
    {
        var root = RepositoryRoot();
        var feed = Path.Combine(_work, "feed");

        // 1. Pack the libraries, as built by this test run, into a folder feed with a version nobody has cached.
        await RunAsync(root, "pack", Path.Combine(root, "MiniQueue.slnx"), "-c", Configuration, "--no-build", "-o", feed, $"-p:PackageVersion={_version}");
        var packages = Directory.GetFiles(feed).Select(Path.GetFileName).Order().ToArray();
        Assert.That(packages, Is.EquivalentTo(new[] { "Core", "Http", "Client", "PostgreSql" }
            .SelectMany(id => new[] { $"MiniQueue.{id}.{_version}.nupkg", $"MiniQueue.{id}.{_version}.snupkg" })));

        // 2. Copy the sample out of the repository and restore it from that feed only for MiniQueue.
        var app = Path.Combine(_work, "app");
        CopySample(Path.Combine(root, "samples", "MiniQueue.Sample"), app);
        File.WriteAllText(Path.Combine(app, "NuGet.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <add key="miniqueue-test-feed" value="{feed}" />
              </packageSources>
            </configuration>
            """);
        await RunAsync(app, "build", "-c", "Release", $"-p:MiniQueueVersion={_version}", "--disable-build-servers");
        var assets = File.ReadAllText(Path.Combine(app, "obj", "project.assets.json"));
        Assert.That(assets, Does.Contain($"\"MiniQueue.Http/{_version}\"").And.Contain($"\"MiniQueue.Core/{_version}\""), "the sample uses the packages just made");
        Assert.That(assets, Does.Not.Contain("\"type\": \"project\""), "and no project reference");

        // 3. Run it on a loopback port with a certificate of the test's.
        var certificate = Path.Combine(_work, "localhost.pem");
        var key = Path.Combine(_work, "localhost-key.pem");
        File.WriteAllText(certificate, TestCertificate.Certificate.ExportCertificatePem());
        using (var privateKey = TestCertificate.Certificate.GetECDsaPrivateKey()!)
        {
            File.WriteAllText(key, privateKey.ExportPkcs8PrivateKeyPem());
        }

        var port = HostProcess.FreePort();
        var output = Path.Combine(app, "bin", "Release", "net10.0");
        using var sample = StartSample(output,
            $"--Kestrel:Endpoints:Https:Url=https://127.0.0.1:{port}",
            $"--Kestrel:Endpoints:Https:Certificate:Path={certificate}",
            $"--Kestrel:Endpoints:Https:Certificate:KeyPath={key}");
        try
        {
            var baseAddress = new Uri($"https://127.0.0.1:{port}/");
            using var anonymous = CreateHttpClient(baseAddress, apiKey: null);
            using var reporting = CreateHttpClient(baseAddress, "reporting-secret");
            using var warehouse = CreateHttpClient(baseAddress, "warehouse-secret");
            await WaitUntilReadyAsync(anonymous, sample.Process, sample.Output);

            // 4. The queue's routes are behind the shop's authorization: no key 401, a key without the role 403.
            using (Assert.EnterMultipleScope())
            {
                Assert.That((await anonymous.PostAsync("mq/publish/jobs", new StringContent("nope"))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
                Assert.That((await reporting.PostAsync("mq/publish/jobs", new StringContent("nope"))).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
                Assert.That((await anonymous.PostAsync("mq/subscribe/jobs", new StringContent("INIT"))).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
                Assert.That((await reporting.PostAsync("mq/subscribe/jobs", new StringContent("INIT"))).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
                Assert.That((await anonymous.DeleteAsync("mq/jobs")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
                Assert.That((await anonymous.GetAsync("orders/processed")).StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized), "the shop's own endpoints too");

                // And per topic (QueueRules): the role may purge "jobs", but nobody purges "orders".
                Assert.That((await warehouse.DeleteAsync("mq/orders")).StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
                Assert.That((await warehouse.DeleteAsync("mq/jobs")).StatusCode, Is.EqualTo(HttpStatusCode.OK));
            }

            // 5. With the role, the .NET client publishes and consumes through /mq; nothing refused was queued.
            using (var client = CreateClient(new Uri(baseAddress, "mq/"), "warehouse-secret"))
            {
                await client.PublishAsync("jobs", Encoding.UTF8.GetBytes("pack the boxes"));
                await using var jobs = await client.SubscribeAsync("jobs");
                var message = await jobs.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
                Assert.That(Encoding.UTF8.GetString(message.Body.Span), Is.EqualTo("pack the boxes"));
                await jobs.AckAsync();

                await client.PublishAsync("jobs", Encoding.UTF8.GetBytes("second"));
                var next = await jobs.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
                Assert.That(Encoding.UTF8.GetString(next.Body.Span), Is.EqualTo("second"), "the refused publishes never reached the topic");
                await jobs.AckAsync();
            }

            // 6. The in-process worker consumes "orders", whether published by the shop's own endpoint or through /mq.
            Assert.That((await reporting.PostAsJsonAsync("orders", new { item = "apples", quantity = 3 })).StatusCode, Is.EqualTo(HttpStatusCode.Accepted));
            Assert.That((await warehouse.PostAsync("mq/publish/orders", new StringContent("""{"item":"pears","quantity":2}"""))).StatusCode, Is.EqualTo(HttpStatusCode.Created));
            Assert.That((await reporting.PostAsJsonAsync("orders", new { item = "", quantity = 1 })).StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            var deadline = DateTime.UtcNow + TestSupport.Bound;
            string processed;
            do
            {
                await Task.Delay(50);
                processed = await reporting.GetStringAsync("orders/processed");
            }
            while (!processed.Contains("pears", StringComparison.Ordinal) && DateTime.UtcNow < deadline);

            Assert.That(processed, Is.EqualTo("""[{"item":"apples","quantity":3},{"item":"pears","quantity":2}]"""));
        }
        finally
        {
            sample.Stop();
        }

        Assert.That(sample.Output.ToString(), Does.Contain("Processed an order of 2 x pears"), "the worker logs through the app's logging");

        // 7. Shared mode: two replicas of the shop, each given the same database at MiniQueue:PostgreSql, serve one queue.
        var database = await (await PostgreSqlCluster.SharedAsync()).CreateDatabaseAsync();
        var replicas = new[] { HostProcess.FreePort(), HostProcess.FreePort() }.Select(replicaPort => (Port: replicaPort, Process: StartSample(output,
            $"--Kestrel:Endpoints:Https:Url=https://127.0.0.1:{replicaPort}",
            $"--Kestrel:Endpoints:Https:Certificate:Path={certificate}",
            $"--Kestrel:Endpoints:Https:Certificate:KeyPath={key}",
            $"--MiniQueue:PostgreSql={database}"))).ToArray();
        try
        {
            foreach (var replica in replicas)
            {
                using var probe = CreateHttpClient(new Uri($"https://127.0.0.1:{replica.Port}/"), apiKey: null);
                await WaitUntilReadyAsync(probe, replica.Process.Process, replica.Process.Output);
            }

            using var first = CreateClient(new Uri($"https://127.0.0.1:{replicas[0].Port}/mq/"), "warehouse-secret");
            using var second = CreateClient(new Uri($"https://127.0.0.1:{replicas[1].Port}/mq/"), "warehouse-secret");
            await first.PublishAsync("jobs", Encoding.UTF8.GetBytes("published on the first"));
            await using var jobs = await second.SubscribeAsync("jobs");
            var message = await jobs.ReceiveAsync().AsTask().WaitAsync(TestSupport.Bound);
            Assert.That(Encoding.UTF8.GetString(message.Body.Span), Is.EqualTo("published on the first"), "consumed on the second");
            await jobs.AckAsync();
        }
        finally
        {
            foreach (var replica in replicas)
            {
                replica.Process.Dispose();
            }
        }
    }

    private static string Configuration =>
        typeof(SampleAppTests).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Release";

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "MiniQueue.slnx")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"No MiniQueue.slnx above {AppContext.BaseDirectory}.");
    }

    private static void CopySample(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(from, file);
            var top = relative.Split(Path.DirectorySeparatorChar)[0];
            if (top is "bin" or "obj")
            {
                continue;
            }

            var target = Path.Combine(to, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }

    /// <summary>Runs the dotnet CLI to its end within a bound; fails the test with its output if it fails.</summary>
    private static async Task RunAsync(string workingDirectory, params string[] arguments)
    {
        var start = DotnetStartInfo(workingDirectory);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = new Process { StartInfo = start };
        var output = new StringBuilder();
        process.OutputDataReceived += (_, line) => { lock (output) { output.AppendLine(line.Data); } };
        process.ErrorDataReceived += (_, line) => { lock (output) { output.AppendLine(line.Data); } };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await process.WaitForExitAsync().WaitAsync(s_buildBound);
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"dotnet {string.Join(' ', arguments)} did not finish in {s_buildBound}:\n{output}");
        }

        if (process.ExitCode != 0)
        {
            Assert.Fail($"dotnet {string.Join(' ', arguments)} exited with {process.ExitCode}:\n{output}");
        }
    }

    /// <summary>The dotnet CLI, without the MSBuild settings of the test run that started this test.</summary>
    private static ProcessStartInfo DotnetStartInfo(string workingDirectory)
    {
        var start = new ProcessStartInfo(HostProcess.DotnetHost())
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var name in start.Environment.Keys.Where(static name => name.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToArray())
        {
            start.Environment.Remove(name);
        }

        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        return start;
    }

    private sealed class SampleProcess(Process process) : IDisposable
    {
        public Process Process { get; } = process;

        public StringBuilder Output { get; } = new();

        public void Stop()
        {
            if (!Process.HasExited)
            {
                Process.Kill(entireProcessTree: true);
                Process.WaitForExit(TestSupport.Bound);
            }
        }

        public void Dispose()
        {
            Stop();
            Process.Dispose();
        }
    }

    private static SampleProcess StartSample(string directory, params string[] arguments)
    {
        var start = DotnetStartInfo(directory);
        start.ArgumentList.Add(Path.Combine(directory, "MiniQueue.Sample.dll"));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        var sample = new SampleProcess(new Process { StartInfo = start });
        sample.Process.OutputDataReceived += (_, line) => { lock (sample.Output) { sample.Output.AppendLine(line.Data); } };
        sample.Process.ErrorDataReceived += (_, line) => { lock (sample.Output) { sample.Output.AppendLine(line.Data); } };
        sample.Process.Start();
        sample.Process.BeginOutputReadLine();
        sample.Process.BeginErrorReadLine();
        return sample;
    }

    private static async Task WaitUntilReadyAsync(HttpClient client, Process process, StringBuilder output)
    {
        var deadline = DateTime.UtcNow + TestSupport.Bound;
        while (true)
        {
            if (process.HasExited)
            {
                Assert.Fail($"the sample exited with {process.ExitCode}:\n{output}");
            }

            try
            {
                using var response = await client.GetAsync("");
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"the sample did not answer:\n{output}");
            }

            await Task.Delay(100);
        }
    }

    private static HttpClient CreateHttpClient(Uri baseAddress, string? apiKey)
    {
        var client = new HttpClient(CreateHandler(apiKey))
        {
            BaseAddress = baseAddress,
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TestSupport.Bound,
        };
        return client;
    }

    private static MiniQueueClient CreateClient(Uri baseAddress, string apiKey) => new(new MiniQueueClientOptions
    {
        BaseAddress = baseAddress,
        CreateHandler = () => CreateHandler(apiKey),
        RequestTimeout = TestSupport.Bound,
    });

    private static HttpMessageHandler CreateHandler(string? apiKey)
    {
        var sockets = new SocketsHttpHandler { SslOptions = { RemoteCertificateValidationCallback = TestCertificate.Validation } };
        return apiKey is null ? sockets : new ApiKeyHandler(apiKey) { InnerHandler = sockets };
    }

    /// <summary>Adds the shop's API key to every request, as a service calling the shop would.</summary>
    private sealed class ApiKeyHandler(string apiKey) : DelegatingHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            request.Headers.Add("X-Api-Key", apiKey);
            return base.SendAsync(request, cancellationToken);
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            if (Directory.Exists(path))
            {
                Directory.Delete(path, recursive: true);
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
