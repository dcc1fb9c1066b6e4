using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.RegularExpressions;
using MiniQueue.Client;
using MiniQueue.Tests.Host;
using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Samples;

/// <summary>
/// The client examples under samples/clients, each run as a real process (<c>dotnet MiniQueue.Samples.X.dll</c>)
/// against the real standalone host, and judged by what they print and what they leave in the queue.
/// </summary>
[CancelAfter(60_000)]
public sealed partial class ClientExamplesTests
{
    private TempDirectory _directory = null!;
    private HostProcess _host = null!;
    private X509Certificate2 _certificate = null!;
    private MiniQueueClient _client = null!;

    /// <summary>The certificate the host made for itself, which the examples trust with <c>--cacert</c>.</summary>
    private string CaCert => Path.Combine(_directory.Path, "data", "tls", "localhost.pem");

    private string Url => $"https://localhost:{_host.Port.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>One host for all the tests (each test has topics of its own): starting one takes about a second.</summary>
    [OneTimeSetUp]
    public async Task StartHostAsync()
    {
        _directory = new TempDirectory();
        _host = HostProcess.Start(_directory.Path, "-db", "data", "-level", "warn");
        try
        {
            await _host.WaitUntilReadyAsync();
        }
        catch
        {
            await _host.DisposeAsync();
            _directory.Dispose();
            throw;
        }

        _certificate = _host.GeneratedCertificate();
        _client = _host.CreateClient(_certificate);
    }

    [OneTimeTearDown]
    public async Task StopHostAsync()
    {
        _client.Dispose();
        await _host.DisposeAsync();
        _certificate.Dispose();
        _directory.Dispose();
    }

    [Test]
    public async Task Echo_PrintsBackEachLineItPublished_FromStandardInputAndFromArguments()
    {
        var topic = NewTopic("echo");

        await using (var echo = Example.Start("Echo", input: "one\ntwo words\nthree\n", Connect(topic)))
        {
            Assert.That(await echo.WaitForExitAsync(), Is.Zero, echo.ToString());
            Assert.That(echo.Output, Is.EqualTo(new[] { "one", "two words", "three" }), echo.ToString());
        }

        await using (var echo = Example.Start("Echo", input: null, [.. Connect(topic), "hello", "world"]))
        {
            Assert.That(await echo.WaitForExitAsync(), Is.Zero, echo.ToString());
            Assert.That(echo.Output, Is.EqualTo(new[] { "hello world" }), echo.ToString());
        }

        await AssertTopicIsEmptyAsync(topic);
    }

    [Test]
    public async Task WorkerPool_ConsumesEveryPublishedJobExactlyOnce_SpreadOverTheWorkers()
    {
        var topic = NewTopic("jobs");
        var jobs = Enumerable.Range(1, 30).Select(i => $"job-{i:00}").ToArray();
        foreach (var job in jobs)
        {
            await _client.PublishAsync(topic, Encoding.UTF8.GetBytes(job));
        }

        await using var pool = Example.Start("WorkerPool", input: null, [.. Connect(topic), "--workers", "3", "--count", "30", "--work-ms", "30"]);

        Assert.That(await pool.WaitForExitAsync(), Is.Zero, pool.ToString());
        var done = JobLines(pool.Output);
        var perWorker = WorkerCounts(pool.Output);
        using (Assert.EnterMultipleScope())
        {
            Assert.That(done.Select(line => line.Job), Is.EquivalentTo(jobs).And.Unique, pool.ToString());
            Assert.That(done.Select(line => line.Worker).Distinct().Count(), Is.GreaterThan(1), $"one worker did everything:\n{pool}");
            Assert.That(perWorker, Is.EqualTo(new[] { 1, 2, 3 }.ToDictionary(worker => worker, worker => done.Count(line => line.Worker == worker))), pool.ToString());
            Assert.That(pool.Output, Has.Some.StartsWith("done: 30 jobs in "), pool.ToString());
        }

        await AssertTopicIsEmptyAsync(topic);
    }

    [Test]
    public async Task WorkerPool_OnCtrlC_FinishesTheJobsInHand_PrintsTheCounts_AndExitsZero()
    {
        var topic = NewTopic("jobs");
        await using var pool = Example.Start("WorkerPool", input: null, [.. Connect(topic), "--workers", "2", "--publish", "10", "--work-ms", "10"]);
        await pool.WaitForOutputAsync(output => JobLines(output).Count == 10);

        pool.Interrupt();

        Assert.That(await pool.WaitForExitAsync(), Is.Zero, pool.ToString());
        using (Assert.EnterMultipleScope())
        {
            Assert.That(pool.Error, Does.Contain("stopping"));
            Assert.That(JobLines(pool.Output).Select(line => line.Job), Is.EquivalentTo(Enumerable.Range(1, 10).Select(i => $"job {i}")), pool.ToString());
            Assert.That(WorkerCounts(pool.Output).Values.Sum(), Is.EqualTo(10), pool.ToString());
        }

        await AssertTopicIsEmptyAsync(topic);
    }

    [Test]
    public async Task Retry_DelaysAFailingMessageLongerEachTime_WithAGrowingDackCount_ThenDeadLettersIt()
    {
        var topic = NewTopic("tasks");
        await _client.PublishAsync(topic, "flaky"u8.ToArray());

        await using var retry = Example.Start("Retry", input: null,
            [.. Connect(topic), "--fail-first", "100", "--max-attempts", "3", "--base-delay", "1", "--max-delay", "2", "--count", "1"]);

        Assert.That(await retry.WaitForExitAsync(), Is.Zero, retry.ToString());
        var attempts = Attempts(retry.Output, "flaky");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(attempts.Select(a => a.DackCount), Is.EqualTo(new[] { 0, 1, 2 }), retry.ToString());
            Assert.That(attempts.Select(a => a.Outcome), Is.EqualTo(new[]
            {
                "failed; DACK 1s",
                "failed; DACK 2s",
                $"failed; giving up after 3 attempts: moved to {topic}.dead, ACK",
            }), retry.ToString());
            Assert.That(retry.Output[^1], Is.EqualTo($"done: 0 handled, 1 dead-lettered to {topic}.dead"));
        }

        // The server never delivers a delayed message early: the waits are the backoff itself.
        Assert.That(attempts[1].Seconds - attempts[0].Seconds, Is.GreaterThanOrEqualTo(0.95), retry.ToString());
        Assert.That(attempts[2].Seconds - attempts[1].Seconds, Is.GreaterThanOrEqualTo(1.95), retry.ToString());

        await AssertTopicIsEmptyAsync(topic);
        await AssertTopicHoldsAsync($"{topic}.dead", "flaky");
    }

    [Test]
    public async Task Retry_HandlesAMessageOnALaterAttempt_AndDeadLettersNothing()
    {
        var topic = NewTopic("tasks");
        await _client.PublishAsync(topic, "first"u8.ToArray());
        await _client.PublishAsync(topic, "second"u8.ToArray());

        await using var retry = Example.Start("Retry", input: null,
            [.. Connect(topic), "--fail-first", "2", "--max-attempts", "4", "--base-delay", "0", "--count", "2"]);

        Assert.That(await retry.WaitForExitAsync(), Is.Zero, retry.ToString());
        using (Assert.EnterMultipleScope())
        {
            foreach (var text in new[] { "first", "second" })
            {
                var attempts = Attempts(retry.Output, text);
                Assert.That(attempts.Select(a => a.DackCount), Is.EqualTo(new[] { 0, 1, 2 }), retry.ToString());
                Assert.That(attempts.Select(a => a.Outcome), Is.EqualTo(new[] { "failed; DACK 0s", "failed; DACK 0s", "succeeded; ACK" }), retry.ToString());
            }

            Assert.That(retry.Output[^1], Is.EqualTo($"done: 2 handled, 0 dead-lettered to {topic}.dead"));
        }

        await AssertTopicIsEmptyAsync(topic);
        await AssertTopicIsEmptyAsync($"{topic}.dead");
    }

    [Test]
    public async Task Probe_ReportsWhatItPublishedAndConsumed_AtNonzeroRates()
    {
        var topic = NewTopic("probe");

        await using var probe = Example.Start("Probe", input: null,
            [.. Connect(topic), "--messages", "300", "--size", "64", "--publishers", "4", "--consumers", "4"]);

        Assert.That(await probe.WaitForExitAsync(), Is.Zero, probe.ToString());
        var report = probe.Output.Select(line => ReportLine().Match(line)).Where(match => match.Success).ToDictionary(
            match => match.Groups["phase"].Value,
            match => (Messages: int.Parse(match.Groups["messages"].Value, CultureInfo.InvariantCulture), Rate: double.Parse(match.Groups["rate"].Value, CultureInfo.InvariantCulture)));
        using (Assert.EnterMultipleScope())
        {
            Assert.That(report.Keys, Is.EquivalentTo(new[] { "publish", "consume+ACK" }), probe.ToString());
            Assert.That(report.Values.Select(phase => phase.Messages), Is.All.EqualTo(300), probe.ToString());
            Assert.That(report.Values.Select(phase => phase.Rate), Is.All.Positive, probe.ToString());
            Assert.That(probe.Output, Has.None.StartsWith("note:"), "every message consumed was one the probe published");
        }

        await AssertTopicIsEmptyAsync(topic);
    }

    [TestCase("Echo", new[] { "--url", "{url}", "hello" }, 1, "error: the server's certificate is not trusted")]
    [TestCase("Echo", new[] { "--url", "https://localhost:1", "--cacert", "{cacert}", "hello" }, 1, "error: cannot talk to the server")]
    [TestCase("Retry", new[] { "--cacert", "missing.pem" }, 2, "error: --cacert: cannot read a certificate from 'missing.pem'")]
    [TestCase("WorkerPool", new[] { "--workers", "0" }, 2, "error: --workers must be a whole number of at least 1, not '0'")]
    [TestCase("Probe", new[] { "--bogus" }, 2, "error: unknown option --bogus")]
    public async Task AProblem_IsOneClearLineOnStderr_AndANonzeroExitCode_NotAStackTrace(string name, string[] arguments, int exitCode, string message)
    {
        await using var example = Example.Start(name, input: null, [.. arguments.Select(a => a.Replace("{url}", Url, StringComparison.Ordinal).Replace("{cacert}", CaCert, StringComparison.Ordinal))]);

        Assert.That(await example.WaitForExitAsync(), Is.EqualTo(exitCode), example.ToString());
        using (Assert.EnterMultipleScope())
        {
            Assert.That(example.Error, Does.StartWith(message), example.ToString());
            Assert.That(example.Error, Does.Not.Contain("   at "), "no stack trace");
            Assert.That(example.Output, Is.Empty);
        }
    }

    [Test]
    public async Task Help_PrintsTheUsage_AndExitsZero([Values("Echo", "WorkerPool", "Retry", "Probe")] string name)
    {
        await using var example = Example.Start(name, input: null, "--help");

        Assert.That(await example.WaitForExitAsync(), Is.Zero, example.ToString());
        Assert.That(example.Output, Has.Some.StartsWith($"Usage: {name} [options]").And.Some.Contains("--cacert FILE"));
    }

    private static string NewTopic(string prefix) => $"{prefix}-{Guid.NewGuid():N}";

    private string[] Connect(string topic) => ["--url", Url, "--cacert", CaCert, "--topic", topic];

    /// <summary>Checks that nothing is left ready in a topic: a message published now is the first one delivered.</summary>
    private Task AssertTopicIsEmptyAsync(string topic) => AssertTopicHoldsAsync(topic);

    /// <summary>
    /// Checks that a topic holds exactly <paramref name="expected"/>, in order, and nothing else ready: it publishes a
    /// sentinel and consumes up to it. Once per topic: the stream ends without settling the sentinel, which returns.
    /// </summary>
    private async Task AssertTopicHoldsAsync(string topic, params string[] expected)
    {
        var sentinel = $"sentinel-{Guid.NewGuid():N}";
        await _client.PublishAsync(topic, Encoding.UTF8.GetBytes(sentinel));
        await using var subscription = await _client.SubscribeAsync(topic);
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        var found = new List<string>();
        while (true)
        {
            var message = Encoding.UTF8.GetString((await subscription.ReceiveAsync(timeout.Token)).Body.Span);
            if (message == sentinel)
            {
                break;
            }

            found.Add(message);
            // Settled before the next receive on the same stream, so the server has applied it: this ACK is not raced.
            await subscription.AckAsync();
        }

        Assert.That(found, Is.EqualTo(expected), $"what '{topic}' held");
    }

    /// <summary>The WorkerPool's line per job: <c>worker 2: job 7 (31 ms)</c>.</summary>
    private static List<(int Worker, string Job)> JobLines(IEnumerable<string> output) =>
        [.. output.Select(line => JobLine().Match(line)).Where(match => match.Success)
            .Select(match => (int.Parse(match.Groups["worker"].Value, CultureInfo.InvariantCulture), match.Groups["job"].Value))];

    /// <summary>The WorkerPool's summary: <c>  worker 2: 11 jobs</c>.</summary>
    private static Dictionary<int, int> WorkerCounts(IEnumerable<string> output) =>
        output.Select(line => WorkerCountLine().Match(line)).Where(match => match.Success).ToDictionary(
            match => int.Parse(match.Groups["worker"].Value, CultureInfo.InvariantCulture),
            match => int.Parse(match.Groups["jobs"].Value, CultureInfo.InvariantCulture));

    /// <summary>The Retry example's lines about one message: <c>[   1.02s] flaky: attempt 2 (dackCount 1) failed; DACK 2s</c>.</summary>
    private static List<(double Seconds, int DackCount, string Outcome)> Attempts(IEnumerable<string> output, string message) =>
        [.. output.Select(line => AttemptLine().Match(line)).Where(match => match.Success && match.Groups["message"].Value == message)
            .Select(match => (
                double.Parse(match.Groups["seconds"].Value, CultureInfo.InvariantCulture),
                int.Parse(match.Groups["dackCount"].Value, CultureInfo.InvariantCulture),
                match.Groups["outcome"].Value))];

    [GeneratedRegex(@"^worker (?<worker>\d+): (?<job>.+) \(\d+ ms\)$")]
    private static partial Regex JobLine();

    [GeneratedRegex(@"^  worker (?<worker>\d+): (?<jobs>\d+) jobs$")]
    private static partial Regex WorkerCountLine();

    [GeneratedRegex(@"^\[\s*(?<seconds>[0-9.]+)s\] (?<message>.+): attempt \d+ \(dackCount (?<dackCount>\d+)\) (?<outcome>.+)$")]
    private static partial Regex AttemptLine();

    [GeneratedRegex(@"^(?<phase>publish|consume\+ACK): (?<messages>\d+) messages .* in [0-9.]+ s: (?<rate>[0-9.]+) msg/s$")]
    private static partial Regex ReportLine();

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    /// <summary>An example as a child process, with its output captured line by line.</summary>
    private sealed class Example : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly List<string> _output = [];
        private readonly List<string> _error = [];
        private readonly Task _readers;

        private Example(Process process)
        {
            _process = process;
            _readers = Task.WhenAll(Pump(process.StandardOutput, _output), Pump(process.StandardError, _error));
        }

        public string[] Output
        {
            get
            {
                lock (_output)
                {
                    return [.. _output];
                }
            }
        }

        public string Error
        {
            get
            {
                lock (_error)
                {
                    return string.Join('\n', _error);
                }
            }
        }

        /// <summary>Starts <c>dotnet MiniQueue.Samples.{name}.dll</c> (built beside the tests), writes <paramref name="input"/> to its stdin and closes it.</summary>
        public static Example Start(string name, string? input, params IEnumerable<string> arguments)
        {
            var start = new ProcessStartInfo(HostProcess.DotnetHost())
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            if (HostProcess.IsInterruptIgnored() && File.Exists("/usr/bin/env"))
            {
                // SIGINT ignored here would be inherited, and .NET would never see Ctrl+C: start with it at its default.
                start.FileName = "/usr/bin/env";
                start.ArgumentList.Add("--default-signal=INT");
                start.ArgumentList.Add(HostProcess.DotnetHost());
            }

            start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, $"MiniQueue.Samples.{name}.dll"));
            foreach (var argument in arguments)
            {
                start.ArgumentList.Add(argument);
            }

            var example = new Example(Process.Start(start)!);
            if (input is not null)
            {
                example._process.StandardInput.Write(input);
            }

            example._process.StandardInput.Close();
            return example;
        }

        public async Task<int> WaitForExitAsync()
        {
            await _process.WaitForExitAsync().WaitAsync(TestSupport.Bound);
            await _readers.WaitAsync(TestSupport.Bound);
            return _process.ExitCode;
        }

        public async Task WaitForOutputAsync(Func<string[], bool> condition)
        {
            var deadline = DateTime.UtcNow + TestSupport.Bound;
            while (!condition(Output))
            {
                if (_process.HasExited || DateTime.UtcNow > deadline)
                {
                    Assert.Fail($"the example did not print what was expected:\n{this}");
                }

                await Task.Delay(20);
            }
        }

        /// <summary>Sends SIGINT, as Ctrl+C does.</summary>
        public void Interrupt()
        {
            if (Kill(_process.Id, 2) != 0)
            {
                throw new InvalidOperationException($"kill({_process.Id}, SIGINT) failed: {Marshal.GetLastPInvokeErrorMessage()}");
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync().WaitAsync(TestSupport.Bound);
            }

            _process.Dispose();
        }

        public override string ToString() => $"stdout:\n{string.Join('\n', Output)}\nstderr:\n{Error}";

        private static async Task Pump(StreamReader reader, List<string> lines)
        {
            while (await reader.ReadLineAsync() is { } line)
            {
                lock (lines)
                {
                    lines.Add(line);
                }
            }
        }
    }
}
