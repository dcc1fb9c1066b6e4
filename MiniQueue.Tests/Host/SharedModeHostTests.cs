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

    [Test]
    public async Task TwoHostsOnOneDatabase_PublishOnOne_ConsumeOnTheOther_CompetingConsumersOnBoth_AndAKilledHostsMessageComesBack()
    {
        var database = await (await PostgreSqlCluster.SharedAsync()).CreateDatabaseAsync();
        using var firstDirectory = new TempDirectory();
        using var secondDirectory = new TempDirectory();
        await using var first = await StartHostAsync(firstDirectory, database);
        var second = await StartHostAsync(secondDirectory, database);
        try
        {
            using var firstHttp = first.CreateHttpClient(first.GeneratedCertificate());
            using var secondHttp = second.CreateHttpClient(second.GeneratedCertificate());

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
            Assert.That(await DurableTestSupport.EventuallyAsync(() => queue.GetStats("jobs") == default), Is.True, "every job acknowledged once");
        }
        finally
        {
            await second.DisposeAsync();
        }
    }
}
