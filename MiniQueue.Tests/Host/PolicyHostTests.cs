using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using MiniQueue.Tests.Http;
using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Host;

/// <summary>
/// The topic policies over the wire against the real host, with a SIGKILL and a restart in between (docs/PROTOCOL.md
/// "Leases", "Delayed publish"). Real time: the lease is 4 s, the delay 6 s.
/// </summary>
[CancelAfter(120_000)]
public sealed class PolicyHostTests
{
    private static string MessageLine(string text, int dackCount = 0) => RawConsumerStream.MessageLine(text, dackCount);

    [Test]
    public async Task LeaseAndDelayedPublish_HoldAcrossASigkillAndARestart()
    {
        using var directory = new TempDirectory();
        var port = HostProcess.FreePort().ToString(CultureInfo.InvariantCulture);
        string[] arguments = ["-db", "data", "-lease", "4s", "-level", "info", "-port", port];
        var delayed = Stopwatch.StartNew();
        await using (var host = HostProcess.Start(directory.Path, arguments))
        {
            await host.WaitUntilReadyAsync();
            using var http = host.CreateHttpClient(host.GeneratedCertificate());
            using (var response = await http.PostAsync("publish/later?delay=6", new StringContent("due 6 s after its publish")))
            {
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
            }

            using (var response = await http.PostAsync("publish/jobs", new StringContent("job")))
            {
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
            }

            // A consumer that holds its message past the 4 s lease hears so without asking, and holds nothing after.
            await using var stream = await RawConsumerStream.OpenAsync(http, "subscribe/jobs");
            await stream.SendAsync("\"INIT\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("job")));
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"error\":\"lease expired\"}\n"));
            await stream.SendAsync("\"ACK\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"error\":\"error ACKing message\"}\n"));

            // It takes the message again, and the host dies while it holds it.
            await stream.SendAsync("\"INIT\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("job")));
            await host.KillAsync();
        }

        await using var restarted = HostProcess.Start(directory.Path, arguments);
        await restarted.WaitUntilReadyAsync();
        using var again = restarted.CreateHttpClient(restarted.GeneratedCertificate());

        // The held job is back; TOUCH keeps it past its 4 s lease (3 s, TOUCH, 3 s), so the ACK works.
        await using (var stream = await RawConsumerStream.OpenAsync(again, "subscribe/jobs"))
        {
            await stream.SendAsync("\"INIT\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("job")));
            await Task.Delay(TimeSpan.FromSeconds(3));
            await stream.SendAsync("\"TOUCH\"\n");
            await Task.Delay(TimeSpan.FromSeconds(3));

            // 6 s after the delivery, 3 s after TOUCH: the ACK is taken, so the next line is the next message.
            await stream.SendAsync("\"ACK\"\n");
            using (var response = await again.PostAsync("publish/jobs", new StringContent("next")))
            {
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
            }

            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("next")));
        }

        // The delayed message survived the SIGKILL with its due time: not delivered before 6 s after its publish.
        await using (var stream = await RawConsumerStream.OpenAsync(again, "subscribe/later"))
        {
            await stream.SendAsync("\"INIT\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("due 6 s after its publish")));
            Assert.That(delayed.Elapsed, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds(6)));
            await stream.SendAsync("\"ACK\"\n");
        }

        await using (var stream = await RawConsumerStream.OpenAsync(again, "subscribe/jobs"))
        {
            // "next" came back when its stream ended; the ACKed job never does.
            await stream.SendAsync("\"INIT\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("next")));
            await stream.SendAsync("\"ACK\"\n");
            var nothing = stream.ReadLineAsync();
            Assert.That(await TestSupport.StaysPendingAsync(nothing), Is.True, "the ACKed job is gone for good");
        }
    }

    [Test]
    public async Task DeadLetterAndRedrive_HoldAcrossASigkillAndARestart()
    {
        using var directory = new TempDirectory();
        var port = HostProcess.FreePort().ToString(CultureInfo.InvariantCulture);
        string[] arguments = ["-db", "data", "-max-deliveries", "2", "-level", "info", "-port", port];
        await using (var host = HostProcess.Start(directory.Path, arguments))
        {
            await host.WaitUntilReadyAsync();
            using var http = host.CreateHttpClient(host.GeneratedCertificate());
            foreach (var text in new[] { "poison", "fine" })
            {
                using var response = await http.PostAsync("publish/jobs", new StringContent(text));
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
            }

            await using var stream = await RawConsumerStream.OpenAsync(http, "subscribe/jobs");
            await stream.SendAsync("\"INIT\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("poison")));
            await stream.SendAsync("\"NACK\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("poison")));

            // The NACK leads to the next delivery: not poison a third time, but the next message.
            await stream.SendAsync("\"NACK\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("fine")));
            await stream.SendAsync("\"ACK\"\n");
            await using var dead = await RawConsumerStream.OpenAsync(http, "subscribe/jobs.dead");
            await dead.SendAsync("\"INIT\"\n");
            Assert.That(await dead.ReadLineAsync(), Is.EqualTo(MessageLine("poison")));

            // A publish is answered once it is durable, and commits are prefixes of the log: after this 201 the ACK and
            // the move before it are durable too (once the server has taken the ACK, which it does not answer: its metrics
            // say). Then the host dies while a consumer of the dead-letter topic holds the message.
            var deadline = DateTime.UtcNow + TestSupport.Bound;
            while (!(await http.GetStringAsync("metrics")).Contains("miniqueue_messages_acked{topic=\"jobs\"} 1", StringComparison.Ordinal)
                && DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }

            using (var response = await http.PostAsync("publish/marker", new StringContent("commit point")))
            {
                Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
            }

            await host.KillAsync();
        }

        await using var restarted = HostProcess.Start(directory.Path, arguments);
        await restarted.WaitUntilReadyAsync();
        using var again = restarted.CreateHttpClient(restarted.GeneratedCertificate());
        using (var response = await again.PostAsync("redrive/jobs", null))
        {
            Assert.That(await response.Content.ReadAsStringAsync(), Is.EqualTo("{\"moved\":1}\n"), "the move survived, and the held message came back to jobs.dead");
        }

        // Back in jobs as a new message: two more deliveries before it would move again.
        await using var consumer = await RawConsumerStream.OpenAsync(again, "subscribe/jobs");
        await consumer.SendAsync("\"INIT\"\n");
        Assert.That(await consumer.ReadLineAsync(), Is.EqualTo(MessageLine("poison")));
        await consumer.SendAsync("\"NACK\"\n");
        Assert.That(await consumer.ReadLineAsync(), Is.EqualTo(MessageLine("poison")));
        await consumer.SendAsync("\"ACK\"\n");
        var nothing = consumer.ReadLineAsync();
        Assert.That(await TestSupport.StaysPendingAsync(nothing), Is.True, "\"fine\" was ACKed before the SIGKILL");
    }

    [Test]
    public async Task IdempotencyKeys_HoldAcrossASigkillAndARestart()
    {
        using var directory = new TempDirectory();
        var port = HostProcess.FreePort().ToString(CultureInfo.InvariantCulture);
        string[] arguments = ["-db", "data", "-level", "info", "-port", port];
        static async Task<HttpResponseMessage> PublishAsync(HttpClient http, string body, string key)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "publish/orders") { Content = new StringContent(body) };
            request.Headers.Add("Idempotency-Key", key);
            return await http.SendAsync(request);
        }

        await using (var host = HostProcess.Start(directory.Path, arguments))
        {
            await host.WaitUntilReadyAsync();
            using var http = host.CreateHttpClient(host.GeneratedCertificate());
            using var first = await PublishAsync(http, "order 1", "order-1");
            Assert.That((first.StatusCode, first.Headers.Contains("Idempotent-Replayed")), Is.EqualTo((HttpStatusCode.Created, false)));
            await host.KillAsync();
        }

        await using var restarted = HostProcess.Start(directory.Path, arguments);
        await restarted.WaitUntilReadyAsync();
        using var again = restarted.CreateHttpClient(restarted.GeneratedCertificate());
        using (var retry = await PublishAsync(again, "order 1", "order-1"))
        {
            Assert.That(retry.StatusCode, Is.EqualTo(HttpStatusCode.Created));
            Assert.That(retry.Headers.GetValues("Idempotent-Replayed"), Is.EqualTo(new[] { "true" }), "the key was durable with its 201");
        }

        await using var stream = await RawConsumerStream.OpenAsync(again, "subscribe/orders");
        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("order 1")));
        await stream.SendAsync("\"ACK\"\n");
        var nothing = stream.ReadLineAsync();
        Assert.That(await TestSupport.StaysPendingAsync(nothing), Is.True, "once, not twice");
    }
}
