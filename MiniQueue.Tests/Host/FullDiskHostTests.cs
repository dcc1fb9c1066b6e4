using System.Diagnostics;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Host;

/// <summary>
/// The standalone host on a real, small filesystem (a 96 MiB ext4 image or tmpfs), filled by its own publishers until it
/// refuses them, drained, published to again and restarted, over and over, with a ledger of every answer.
/// </summary>
[CancelAfter(280_000)]
public sealed class FullDiskHostTests
{
    private const string Topic = "fill";
    private const int MessageBytes = 64 * 1024;
    private const int Publishers = 8;

    [TestCase(FilesystemKind.Ext4, 20)]
    [TestCase(FilesystemKind.Tmpfs, 6)]
    public async Task FillUntilRefused_DrainAndAck_PublishAgain_Restart_LosesNothingAcknowledged_AndNeverNeedsARestart(FilesystemKind kind, int cycles)
    {
        using var filesystem = SmallFilesystem.Mount(kind, 96);
        using var work = new TempDirectory();
        var dataDirectory = Path.Combine(filesystem.MountPoint, "data");
        var ledger = new Ledger();
        var host = await StartAsync(work.Path, dataDirectory);
        try
        {
            for (var cycle = 0; cycle < cycles; cycle++)
            {
                var refusedAt = await FillAsync(host, ledger, cycle);
                TestContext.Out.WriteLine(
                    $"cycle {cycle}: refused after {ledger.Published.Count} published in all, {filesystem.AvailableBytes / 1024 / 1024} MiB available");
                if (cycle == 0)
                {
                    await AssertSaysItIsRefusingAsync(host);
                }

                // Restart at a different moment each cycle: while full, halfway through the drain, after the drain.
                if (cycle % 3 == 0)
                {
                    host = await RestartAsync(host, work.Path, dataDirectory);
                }

                await DrainAsync(host, ledger, stopAfter: cycle % 3 == 1 ? refusedAt / 2 : int.MaxValue);
                if (cycle % 3 == 1)
                {
                    host = await RestartAsync(host, work.Path, dataDirectory);
                    await DrainAsync(host, ledger, int.MaxValue);
                }

                // With everything drained, publishes are taken again within a few seconds, without a restart.
                var waited = await PublishAgainAsync(host, ledger, cycle);
                TestContext.Out.WriteLine($"cycle {cycle}: publishes taken again {waited.TotalMilliseconds:F0} ms after the drain");
                if (cycle % 3 == 2)
                {
                    host = await RestartAsync(host, work.Path, dataDirectory);
                }
            }

            await DrainAsync(host, ledger, int.MaxValue);
        }
        finally
        {
            await host.DisposeAsync();
        }

        var lost = ledger.Published.Where(id => !ledger.Delivered.ContainsKey(id)).ToList();
        var redelivered = ledger.Delivered.Where(pair => pair.Value > 1).Select(pair => pair.Key).ToList();
        using (Assert.EnterMultipleScope())
        {
            Assert.That(ledger.Refused, Is.Not.Empty, "the filesystem filled up and publishes were refused");
            Assert.That(lost, Is.Empty, $"{lost.Count} of {ledger.Published.Count} messages answered 201 were never delivered");
            Assert.That(ledger.RefusedButDelivered, Is.Empty, "a message answered 503 was delivered");
            Assert.That(redelivered, Is.Empty, "a message ACKed before a graceful restart came back");
        }
    }

    private static async Task<HostProcess> StartAsync(string workingDirectory, string dataDirectory)
    {
        var host = HostProcess.Start(workingDirectory, "-db", dataDirectory, "-level", "info");
        await host.WaitUntilReadyAsync(dataDirectory: dataDirectory);
        return host;
    }

    private static async Task<HostProcess> RestartAsync(HostProcess host, string workingDirectory, string dataDirectory)
    {
        host.Terminate();
        var exitCode = await host.WaitForExitAsync();
        Assert.That(exitCode, Is.Zero, string.Join('\n', host.StandardError.TakeLast(30)));
        await host.DisposeAsync();
        return await StartAsync(workingDirectory, dataDirectory);
    }

    /// <summary>Publishes 64 KiB messages from several publishers until the host refuses them; returns how many it took.</summary>
    private static async Task<int> FillAsync(HostProcess host, Ledger ledger, int cycle)
    {
        using var http = host.CreateHttpClient(Certificate(host));
        var taken = 0;
        var refused = 0;
        var next = 0;
        var limit = 2 * 96 * 1024 * 1024 / MessageBytes;   // twice the filesystem: it never refused
        async Task PublishAsync(int publisher)
        {
            while (Volatile.Read(ref refused) == 0 && Volatile.Read(ref taken) < limit)
            {
                var id = $"c{cycle:D2}-{Interlocked.Increment(ref next):D6}";
                var status = await PostAsync(http, id);
                if (status == HttpStatusCode.Created)
                {
                    ledger.Publish(id);
                    Interlocked.Increment(ref taken);
                }
                else if (status == HttpStatusCode.ServiceUnavailable)
                {
                    ledger.Refuse(id);
                    Interlocked.Increment(ref refused);
                }
                else
                {
                    Assert.Fail($"publisher {publisher}: {id} was answered {(int)status}");
                }
            }
        }

        await Task.WhenAll(Enumerable.Range(0, Publishers).Select(PublishAsync));
        Assert.That(refused, Is.Positive, $"{taken} messages of 64 KiB were taken by a 96 MiB filesystem and none refused");

        // Refusals settle: short of space the store gives back what earlier cycles left behind (a segment let go of, pages
        // below the log's start), so publishes may be taken again for a while after the first refusal; once nothing is
        // left to give back, they are refused for good. Publish one at a time until three are refused in a row.
        var inARow = 0;
        for (var attempt = 0; inARow < 3; attempt++)
        {
            var id = $"c{cycle:D2}-settle-{attempt:D3}";
            var status = await PostAsync(http, id);
            if (status == HttpStatusCode.Created)
            {
                ledger.Publish(id);
                taken++;
                inARow = 0;
            }
            else
            {
                Assert.That(status, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
                ledger.Refuse(id);
                inARow++;
            }

            Assert.That(attempt, Is.LessThan(limit), "publishes were taken for ever although nothing was drained");
        }

        return taken;
    }

    /// <summary>Receives and ACKs until every message answered 201 was delivered, or <paramref name="stopAfter"/> were.</summary>
    private static async Task DrainAsync(HostProcess host, Ledger ledger, int stopAfter)
    {
        using var client = host.CreateClient(Certificate(host));
        await using var subscription = await client.SubscribeAsync(Topic);
        var received = 0;
        while (ledger.Outstanding > 0 && received < stopAfter)
        {
            using var timeout = new CancellationTokenSource(TestSupport.Bound);
            MiniQueue.Client.MiniQueueMessage message;
            try
            {
                message = await subscription.ReceiveAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"{ledger.Outstanding} messages answered 201 were not delivered within {TestSupport.Bound.TotalSeconds} s " +
                    $"(e.g. {string.Join(", ", ledger.OutstandingIds.Take(5))})\n{string.Join('\n', host.StandardError.TakeLast(30))}");
                throw;
            }

            ledger.Deliver(IdOf(message.Body.Span));
            await subscription.AckAsync();
            received++;
        }
    }

    /// <summary>Publishes until the host takes it; returns how long that took.</summary>
    private static async Task<TimeSpan> PublishAgainAsync(HostProcess host, Ledger ledger, int cycle)
    {
        using var http = host.CreateHttpClient(Certificate(host));
        var waiting = Stopwatch.StartNew();
        for (var attempt = 0; ; attempt++)
        {
            var id = $"c{cycle:D2}-again-{attempt:D3}";
            var status = await PostAsync(http, id);
            if (status == HttpStatusCode.Created)
            {
                ledger.Publish(id);
                return waiting.Elapsed;
            }

            Assert.That(status, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            ledger.Refuse(id);
            if (waiting.Elapsed > TestSupport.Bound)
            {
                Assert.Fail($"publishes were still refused {waiting.Elapsed.TotalSeconds:F0} s after the topic was drained\n" +
                    string.Join('\n', host.StandardError.TakeLast(30)));
            }

            await Task.Delay(100);
        }
    }

    /// <summary>While refusing, the host says so: a warning in its log, /healthz degraded, the free space on /metrics.</summary>
    private static async Task AssertSaysItIsRefusingAsync(HostProcess host)
    {
        using var http = host.CreateHttpClient(Certificate(host));
        using var health = await http.GetAsync("healthz");
        var metrics = await http.GetStringAsync("metrics");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(await health.Content.ReadAsStringAsync(), Is.EqualTo("Degraded"));
            Assert.That(metrics, Does.Match("miniqueue_disk_available [0-9]"));
            Assert.That(metrics, Does.Match("miniqueue_disk_reserve [1-9]"));
            Assert.That(metrics, Does.Match("miniqueue_disk_low 1"));
            Assert.That(metrics, Does.Match("miniqueue_publishes_refused_for_space [1-9]"));
            Assert.That(host.StandardError.Any(line => line.Contains("\"Warning\"", StringComparison.Ordinal) && line.Contains("refus", StringComparison.Ordinal)),
                Is.True, "a warning that publishes are refused");
        }
    }

    private static async Task<HttpStatusCode> PostAsync(HttpClient http, string id)
    {
        var body = new byte[MessageBytes];
        Random.Shared.NextBytes(body);
        var prefix = Encoding.ASCII.GetBytes(id + "\n");
        prefix.CopyTo(body, 0);
        using var response = await http.PostAsync($"publish/{Topic}", new ByteArrayContent(body));
        return response.StatusCode;
    }

    private static string IdOf(ReadOnlySpan<byte> body) => Encoding.ASCII.GetString(body[..body.IndexOf((byte)'\n')]);

    /// <summary>The self-signed certificate the host made in its data directory (the folder's name says which).</summary>
    private static X509Certificate2 Certificate(HostProcess host) => host.GeneratedCertificate(host.DataDirectory!);

    /// <summary>Every publish's answer and every delivery, by message id.</summary>
    private sealed class Ledger
    {
        private readonly Lock _lock = new();

        public HashSet<string> Published { get; } = [];

        public HashSet<string> Refused { get; } = [];

        public Dictionary<string, int> Delivered { get; } = [];

        public List<string> RefusedButDelivered { get; } = [];

        public int Outstanding
        {
            get
            {
                lock (_lock)
                {
                    return Published.Count(id => !Delivered.ContainsKey(id));
                }
            }
        }

        public IEnumerable<string> OutstandingIds
        {
            get
            {
                lock (_lock)
                {
                    return [.. Published.Where(id => !Delivered.ContainsKey(id)).Order(StringComparer.Ordinal)];
                }
            }
        }

        public void Publish(string id)
        {
            lock (_lock)
            {
                Published.Add(id);
            }
        }

        public void Refuse(string id)
        {
            lock (_lock)
            {
                Refused.Add(id);
            }
        }

        public void Deliver(string id)
        {
            lock (_lock)
            {
                Delivered[id] = Delivered.GetValueOrDefault(id) + 1;
                if (Refused.Contains(id))
                {
                    RefusedButDelivered.Add(id);
                }
            }
        }
    }
}
