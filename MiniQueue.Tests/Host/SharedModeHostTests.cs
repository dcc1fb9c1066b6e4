using System.Globalization;
using System.Net;
using MiniQueue.Tests.Http;
using MiniQueue.Tests.PostgreSql;
using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Host;

/// <summary>
/// Shared mode over the wire: real host processes started with <c>-postgres</c> on one database of the run's throwaway
/// PostgreSQL cluster serve one queue (docs/shared-mode.md).
/// </summary>
[CancelAfter(120_000)]
public sealed class SharedModeHostTests
{
    private static string MessageLine(string text) => RawConsumerStream.MessageLine(text, 0);

    private static async Task<HostProcess> StartHostAsync(TempDirectory directory, string database)
    {
        var port = HostProcess.FreePort().ToString(CultureInfo.InvariantCulture);
        var host = HostProcess.Start(directory.Path, "-postgres", database, "-db", "data", "-level", "info", "-port", port);
        await host.WaitUntilReadyAsync();
        return host;
    }

    /// <summary>Two hosts on one new database of the run's cluster, each in a folder of its own.</summary>
    private sealed class HostPair : IAsyncDisposable
    {
        private readonly TempDirectory _firstDirectory = new();
        private readonly TempDirectory _secondDirectory = new();

        private HostPair(string database) => Database = database;

        public string Database { get; }

        public HostProcess First { get; private set; } = null!;

        public HostProcess Second { get; private set; } = null!;

        public HttpClient FirstHttp { get; private set; } = null!;

        public HttpClient SecondHttp { get; private set; } = null!;

        public static async Task<HostPair> StartAsync()
        {
            var pair = new HostPair(await (await PostgreSqlCluster.SharedAsync()).CreateDatabaseAsync());
            pair.First = await StartHostAsync(pair._firstDirectory, pair.Database);
            pair.Second = await StartHostAsync(pair._secondDirectory, pair.Database);
            pair.FirstHttp = pair.First.CreateHttpClient(pair.First.GeneratedCertificate());
            pair.SecondHttp = pair.Second.CreateHttpClient(pair.Second.GeneratedCertificate());
            return pair;
        }

        public async ValueTask DisposeAsync()
        {
            FirstHttp?.Dispose();
            SecondHttp?.Dispose();
            if (First is not null)
            {
                await First.DisposeAsync();
            }

            if (Second is not null)
            {
                await Second.DisposeAsync();
            }

            _firstDirectory.Dispose();
            _secondDirectory.Dispose();
        }
    }

    [Test]
    public async Task TwoHostsOnOneDatabase_PublishOnOne_ConsumeOnTheOther_CompetingConsumersOnBoth_AndAKilledHostsMessageComesBack()
    {
        await using var hosts = await HostPair.StartAsync();
        var (database, second, firstHttp, secondHttp) = (hosts.Database, hosts.Second, hosts.FirstHttp, hosts.SecondHttp);

        // Published through one host, delivered through the other.
        using (var response = await firstHttp.PostAsync("publish/orders", new StringContent("order 1")))
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
        }

        await using (var stream = await RawConsumerStream.OpenAsync(secondHttp, "subscribe/orders"))
        {
            await stream.SendAsync("\"INIT\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("order 1")));
            await stream.SendAsync("\"ACK\"\n");
        }

        // Consumers on both hosts compete: each message goes to exactly one of them.
        await using var onFirst = await RawConsumerStream.OpenAsync(firstHttp, "subscribe/jobs");
        await using var onSecond = await RawConsumerStream.OpenAsync(secondHttp, "subscribe/jobs");
        await onFirst.SendAsync("\"INIT\"\n");
        await onSecond.SendAsync("\"INIT\"\n");
        foreach (var job in new[] { "job 1", "job 2" })
        {
            using var response = await secondHttp.PostAsync("publish/jobs", new StringContent(job));
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
        }

        var lines = new[] { await onFirst.ReadLineAsync(), await onSecond.ReadLineAsync() };
        Assert.That(lines.Order(), Is.EqualTo(new[] { MessageLine("job 1"), MessageLine("job 2") }.Order()));

        // The second host dies (SIGKILL) holding its job; the first host's consumer gets it after its ACK, once the
        // dead host's heartbeat is a process lease (10 s) old.
        var heldBySecond = lines[1];
        await second.KillAsync();
        await onFirst.SendAsync("\"ACK\"\n");
        var returned = await onFirst.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(40));
        Assert.That(returned, Is.EqualTo(heldBySecond));
        await onFirst.SendAsync("\"ACK\"\n");

        await using var queue = await MiniQueue.PostgreSql.MiniQueuePostgreSql.OpenAsync(database);
        Assert.That(
            await DurableTestSupport.EventuallyAsync(() => queue.GetStats("jobs") is { Ready: 0, Held: 0, Delayed: 0 }), Is.True,
            "every job acknowledged once");
    }

    [Test]
    public async Task EachHostsMetrics_CountItsOwnOperations_AndShowTheDatabasesCounts()
    {
        await using var hosts = await HostPair.StartAsync();
        var (firstHttp, secondHttp) = (hosts.FirstHttp, hosts.SecondHttp);
        foreach (var body in new[] { "a", "b", "c" })
        {
            using var response = await firstHttp.PostAsync("publish/metered", new StringContent(body));
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
        }

        await using (var stream = await RawConsumerStream.OpenAsync(secondHttp, "subscribe/metered"))
        {
            await stream.SendAsync("\"INIT\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("a")));
            await stream.SendAsync("\"ACK\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("b")));
            await stream.SendAsync("\"ACK\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("c")));
        }

        // The counters are each process's; ready, held and delayed are the database's, so both hosts show them. The
        // gauges are sampled by the exporter and the held message returns once the server sees the stream end: scrape
        // until both have caught up.
        static async Task<string> ScrapeAsync(HttpClient http, string until)
        {
            var deadline = DateTime.UtcNow + TestSupport.Bound;
            string text;
            while (!(text = await http.GetStringAsync("metrics")).Contains(until, StringComparison.Ordinal) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }

            return text;
        }

        var first = await ScrapeAsync(firstHttp, "miniqueue_messages_ready{topic=\"metered\"} 1");
        var second = await ScrapeAsync(secondHttp, "miniqueue_messages_nacked{topic=\"metered\"} 1");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(first, Does.Contain("miniqueue_messages_published{topic=\"metered\"} 3"));
            Assert.That(first, Does.Contain("miniqueue_messages_ready{topic=\"metered\"} 1"));
            Assert.That(first, Does.Contain("miniqueue_publish_duration_count 3"));
            Assert.That(second, Does.Contain("miniqueue_messages_delivered{topic=\"metered\"} 3"));
            Assert.That(second, Does.Contain("miniqueue_messages_acked{topic=\"metered\"} 2"));
            Assert.That(second, Does.Contain("miniqueue_messages_nacked{topic=\"metered\"} 1"), "the held message returned when its stream ended");
            Assert.That(second, Does.Contain("miniqueue_messages_ready{topic=\"metered\"} 1"));
            Assert.That(second, Does.Not.Match("miniqueue_messages_published\\{topic=\"metered\"\\} [1-9]"), "nothing was published through the second");
        }
    }

    [Test]
    public async Task AHostKilledWhileItsConsumerWorks_LosesNothingAnswered201_AndRedeliversNothingWhoseAckWasTaken()
    {
        await using var hosts = await HostPair.StartAsync();
        var (second, firstHttp, secondHttp) = (hosts.Second, hosts.FirstHttp, hosts.SecondHttp);

        // The ledger: every publish answered 201, through either host.
        var answered = new List<string>();
        for (var i = 0; i < 200; i++)
        {
            var body = $"m{i:D3}";
            using var response = await (i % 2 == 0 ? firstHttp : secondHttp).PostAsync("publish/ledger", new StringContent(body));
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
            answered.Add(body);
        }

        // Deliveries in the order they came, per stream; an ACK counts as taken once the stream's next line arrived
        // (the server reads the ACK, then sends the next message).
        var deliveries = new List<(string Stream, string Body)>();
        var taken = new HashSet<string>();
        var streams = new Dictionary<string, RawConsumerStream>
        {
            ["first"] = await RawConsumerStream.OpenAsync(firstHttp, "subscribe/ledger"),
            ["second"] = await RawConsumerStream.OpenAsync(secondHttp, "subscribe/ledger"),
        };
        var pendingAck = new Dictionary<string, string?> { ["first"] = null, ["second"] = null };
        foreach (var stream in streams.Values)
        {
            await stream.SendAsync("\"INIT\"\n");
        }

        async Task<bool> StepAsync(string name, bool ack = true)
        {
            string? line;
            try
            {
                line = await streams[name].ReadLineAsync();
            }
            catch (Exception exception) when (exception is OperationCanceledException or IOException or HttpRequestException)
            {
                return false;
            }

            if (line is null)
            {
                return false;
            }

            if (pendingAck[name] is { } acked)
            {
                taken.Add(acked);
            }

            var body = System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(System.Text.Json.JsonDocument.Parse(line).RootElement.GetProperty("msg").GetString()!));
            lock (deliveries)
            {
                deliveries.Add((name, body));
            }

            pendingAck[name] = ack ? body : null;
            if (ack)
            {
                await streams[name].SendAsync("\"ACK\"\n");
            }

            return true;
        }

        // Both hosts' consumers work; the second host dies (SIGKILL) while it holds its 40th delivery.
        for (var i = 0; i < 40; i++)
        {
            Assert.That(await StepAsync("first"), Is.True);
            Assert.That(await StepAsync("second", ack: i < 39), Is.True);
        }

        var takenBeforeKill = new HashSet<string>(taken);
        var heldAtKill = deliveries[^1].Body;
        await second.KillAsync();

        // The first host's consumer drains the rest, until every message's ACK was taken (the last one's is sent); what
        // the dead host held comes back within the process lease.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (answered.Any(body => !taken.Contains(body) && pendingAck["first"] != body) && DateTime.UtcNow < deadline)
        {
            Assert.That(await StepAsync("first"), Is.True, "the surviving host's stream stays up");
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(answered.Where(body => !deliveries.Any(delivery => delivery.Body == body)), Is.Empty, "every publish answered 201 was delivered");
            var afterKill = deliveries.Skip(80).Select(delivery => delivery.Body);
            Assert.That(afterKill.Where(takenBeforeKill.Contains), Is.Empty, "nothing whose ACK was taken came again");
            Assert.That(afterKill, Does.Contain(heldAtKill), "the message the dead host held came again through the other");
            Assert.That(deliveries.Select(delivery => delivery.Body).Distinct().Count(), Is.EqualTo(200));
        }

        TestContext.Out.WriteLine($"{deliveries.Count} deliveries for 200 messages; {deliveries.Count - 200} redelivered after the kill (held or ACK not yet taken)");
        await streams["first"].DisposeAsync();
    }

    [Test]
    public async Task TheDatabaseStopsAndComesBack_PublishesAnd503_HealthIs503_ThenTheHostRecoversByItself_AndEvery201IsDelivered()
    {
        var cluster = await PostgreSqlCluster.SharedAsync();
        var database = await cluster.CreateDatabaseAsync();
        using var directory = new TempDirectory();
        await using var host = await StartHostAsync(directory, database);
        using var http = host.CreateHttpClient(host.GeneratedCertificate());
        var answered = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            using var response = await http.PostAsync("publish/ledger", new StringContent($"before {i}"));
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
            answered.Add($"before {i}");
        }

        await cluster.WhileStoppedAsync("immediate", async () =>
        {
            using (var response = await http.PostAsync("publish/ledger", new StringContent("while down")))
            {
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            }

            using var health = await http.GetAsync("healthz");
            Assert.That(health.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
        });

        // Back by itself, without a restart: publishes are taken again once the pool's broken connections are gone.
        var deadline = DateTime.UtcNow + TestSupport.Bound;
        while (true)
        {
            using var response = await http.PostAsync("publish/ledger", new StringContent("after"));
            if (response.StatusCode == HttpStatusCode.Created)
            {
                answered.Add("after");
                break;
            }

            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), "publishes are taken again");
            await Task.Delay(100);
        }

        using (var health = await http.GetAsync("healthz"))
        {
            Assert.That(health.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        }

        await using var stream = await RawConsumerStream.OpenAsync(http, "subscribe/ledger");
        await stream.SendAsync("\"INIT\"\n");
        var delivered = new List<string>();
        foreach (var _ in answered)
        {
            var line = await stream.ReadLineAsync();
            delivered.Add(System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(System.Text.Json.JsonDocument.Parse(line!).RootElement.GetProperty("msg").GetString()!)));
            await stream.SendAsync("\"ACK\"\n");
        }

        Assert.That(delivered, Is.EqualTo(answered), "every 201, in order, and not the refused one");
    }
}
