using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace MiniQueue.Tests.Http;

/// <summary>
/// The policy extensions of the consumer stream (docs/PROTOCOL.md "Leases") over a real Kestrel listener (TLS, HTTP/2),
/// with a fake clock. Topics under <c>lease.</c> have a 30 s lease, topics under <c>limited.</c> at most 2 deliveries; others
/// keep the original behaviour.
/// </summary>
[CancelAfter(60_000)]
public sealed class PolicyProtocolTests
{
    private static readonly TimeSpan s_lease = TimeSpan.FromSeconds(30);

    private MiniQueueTestHost _host = null!;
    private HttpClient _client = null!;
    private FakeTimeProvider _clock = null!;

    [OneTimeSetUp]
    public async Task StartServer()
    {
        _clock = TestSupport.NewClock();
        _host = await MiniQueueTestHost.StartAsync(builder =>
        {
            builder.Services.AddSingleton<TimeProvider>(_clock);
            builder.Services.Configure<MiniQueueOptions>(options =>
            {
                options.TopicPolicies.Add(new MiniQueueTopicPolicy { Topics = "lease.*", Lease = s_lease });
                options.TopicPolicies.Add(new MiniQueueTopicPolicy { Topics = "limited.*", MaxDeliveries = 2 });
            });
        });
        _client = _host.CreateHttpClient();
    }

    [OneTimeTearDown]
    public async Task StopServer()
    {
        _client.Dispose();
        await _host.DisposeAsync();
    }

    private static string NewTopic(string prefix = "lease.") => prefix + Guid.NewGuid().ToString("N");

    private MiniQueueEngine Engine => _host.Engine;

    private Task<RawConsumerStream> SubscribeAsync(string topic) => RawConsumerStream.OpenAsync(_client, "subscribe/" + Uri.EscapeDataString(topic));

    private static string MessageLine(string text, int dackCount = 0) => RawConsumerStream.MessageLine(text, dackCount);

    private const string LeaseExpiredLine = "{\"error\":\"lease expired\"}\n";

    [Test]
    public async Task LeasePasses_ConsumerIsToldAtOnce_StreamStaysOpen_AndTheMessageGoesToTheNextConsumer()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "job");
        await using var slow = await SubscribeAsync(topic);
        await slow.SendAsync("\"INIT\"\n");
        Assert.That(await slow.ReadLineAsync(), Is.EqualTo(MessageLine("job")));
        await using var next = await SubscribeAsync(topic);
        await next.SendAsync("\"INIT\"\n");
        Assert.That(await Storage.DurableTestSupport.EventuallyAsync(() => Engine.GetStats(topic).Consumers == 2), Is.True);

        _clock.Advance(s_lease);

        // Told without sending anything; the waiting consumer gets the message at once, as after a NACK.
        Assert.That(await slow.ReadLineAsync(), Is.EqualTo(LeaseExpiredLine));
        Assert.That(await next.ReadLineAsync(), Is.EqualTo(MessageLine("job")));

        // The slow consumer holds nothing: its ACK fails, its TOUCH fails, and the stream is still usable.
        await slow.SendAsync("\"ACK\"\n");
        Assert.That(await slow.ReadLineAsync(), Is.EqualTo("{\"error\":\"error ACKing message\"}\n"));
        await slow.SendAsync("\"TOUCH\"\n");
        Assert.That(await slow.ReadLineAsync(), Is.EqualTo("{\"error\":\"error TOUCHing message\"}\n"));
        await Engine.PublishAsync(topic, "second");
        await slow.SendAsync("\"INIT\"\n");
        Assert.That(await slow.ReadLineAsync(), Is.EqualTo(MessageLine("second")));
    }

    [Test]
    public async Task Touch_RenewsTheLease_WithoutAnAnswer()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "long job");
        await Engine.PublishAsync(topic, "after");
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("long job")));

        _clock.Advance(TimeSpan.FromSeconds(20));
        await SendTouchAsync(stream);
        _clock.Advance(TimeSpan.FromSeconds(20));

        // 40 s after the delivery, 20 s after TOUCH: still held, so the ACK works and the next message follows.
        await stream.SendAsync("\"ACK\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("after")));
    }

    /// <summary>
    /// Sends TOUCH, which is not answered, then an unknown command, which is: commands are handled strictly in order,
    /// so once that answer is in, the TOUCH has been handled.
    /// </summary>
    private static async Task SendTouchAsync(RawConsumerStream stream)
    {
        await stream.SendAsync("\"TOUCH\"\n\"PING\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"error\":\"unrecognised command received\"}\n"));
    }

    [Test]
    public async Task WithoutALease_TouchOnAHeldMessage_IsSilent_AndNothingExpires()
    {
        var topic = NewTopic("plain-");
        await Engine.PublishAsync(topic, "m");
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("m")));

        await SendTouchAsync(stream);
        _clock.Advance(TimeSpan.FromDays(1));
        await stream.SendAsync("\"ACK\"\n");
        await Engine.PublishAsync(topic, "n");

        // The first line after TOUCH and a day is the next message: nothing expired, TOUCH had no answer.
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("n")));
        Assert.That(Engine.GetStats(topic), Is.EqualTo(new TopicStats(0, 1, 0, 1)));
    }

    [Test]
    public async Task PublishWithDelay_Is201AtOnce_AndDeliveredOnlyWhenDue()
    {
        var topic = NewTopic("delay-");
        using (var response = await _client.PostAsync($"publish/{topic}?delay=10", new StringContent("later")))
        {
            Assert.That(response.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.Created));
        }

        Assert.That(Engine.GetStats(topic), Is.EqualTo(new TopicStats(0, 0, 1, 0)));
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        var line = stream.ReadLineAsync();
        Assert.That(await TestSupport.StaysPendingAsync(line), Is.True);

        _clock.Advance(TimeSpan.FromSeconds(10));
        Assert.That(await line, Is.EqualTo(MessageLine("later")), "due now, with no dackCount");
    }

    [TestCase("delay=abc")]
    [TestCase("delay=-1")]
    [TestCase("delay=1.5")]
    [TestCase("delay=")]
    [TestCase("delay=2147483648")]
    [TestCase("delay")]
    [TestCase("delay=1&delay=2")]
    [TestCase("Delay=1&delay=1")]
    public async Task PublishWithAMalformedDelay_Is400_AndPublishesNothing(string query)
    {
        var topic = NewTopic("delay-");
        using var response = await _client.PostAsync($"publish/{topic}?{query}", new StringContent("m"));

        Assert.That(response.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.BadRequest));
        Assert.That(await response.Content.ReadAsStringAsync(), Is.EqualTo("{\"error\":\"invalid delay value\"}\n"));
        Assert.That(Engine.GetTopics(), Does.Not.Contain(topic));
    }

    [TestCase("DELAY=10")]
    [TestCase("delay=%31%30")]
    [TestCase("x=%26&delay=10&y")]
    public async Task TheDelayParameter_IsReadAsTheQueryHasIt_WithoutCase_AndDecoded(string query)
    {
        var topic = NewTopic("delay-");
        using var response = await _client.PostAsync($"publish/{topic}?{query}", new StringContent("m"));

        Assert.That(response.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.Created));
        Assert.That(Engine.GetStats(topic), Is.EqualTo(new TopicStats(0, 0, 1, 0)));
        _clock.Advance(TimeSpan.FromSeconds(10));
        Assert.That(Engine.GetStats(topic), Is.EqualTo(new TopicStats(1, 0, 0, 0)), "due after 10 s");
    }

    [Test]
    public async Task OtherQueryParameters_AreIgnored_AsInTheOriginal()
    {
        var topic = NewTopic("delay-");
        using var response = await _client.PostAsync($"publish/{topic}?x=1&delay=0", new StringContent("m"));

        Assert.That(response.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.Created));
        Assert.That(Engine.GetStats(topic), Is.EqualTo(new TopicStats(1, 0, 0, 0)));
    }

    [Test]
    public async Task AfterItsLastAllowedDelivery_AMessageGoesToTheDeadTopic_AndRedriveBringsItBack()
    {
        var topic = NewTopic("limited.");
        await Engine.PublishAsync(topic, "poison");
        await using (var stream = await SubscribeAsync(topic))
        {
            await stream.SendAsync("\"INIT\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("poison")));
            await stream.SendAsync("\"NACK\"\n");
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("poison")), "the second and last delivery");
            await stream.SendAsync("\"NACK\"\n");
            Assert.That(await Storage.DurableTestSupport.EventuallyAsync(() => Engine.GetStats(topic + ".dead").Ready == 1), Is.True);
            var nothing = stream.ReadLineAsync();
            Assert.That(await TestSupport.StaysPendingAsync(nothing), Is.True, "not delivered a third time");
        }

        await using (var dead = await SubscribeAsync(topic + ".dead"))
        {
            await dead.SendAsync("\"INIT\"\n");
            Assert.That(await dead.ReadLineAsync(), Is.EqualTo(MessageLine("poison")), "an ordinary message there");
        }

        // The stream's end returns the message it held, once the server has handled that end (a redrive leaves held ones).
        Assert.That(await Storage.DurableTestSupport.EventuallyAsync(() => Engine.GetStats(topic + ".dead") == new TopicStats(1, 0, 0, 0)), Is.True);
        using (var response = await _client.PostAsync($"redrive/{topic}", null))
        {
            Assert.That(response.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.OK));
            Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/json"));
            Assert.That(await response.Content.ReadAsStringAsync(), Is.EqualTo("{\"moved\":1}\n"));
        }

        Assert.That(Engine.GetStats(topic), Is.EqualTo(new TopicStats(1, 0, 0, 0)));
        using (var again = await _client.PostAsync($"redrive/{topic}", null))
        {
            Assert.That(await again.Content.ReadAsStringAsync(), Is.EqualTo("{\"moved\":0}\n"));
        }
    }

    [Test]
    public async Task Redrive_OfAnInvalidTopic_Is400_AndOtherMethods405()
    {
        using (var response = await _client.PostAsync("redrive/a%2Fb", null))
        {
            Assert.That(response.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.BadRequest));
        }

        using var get = await _client.GetAsync("redrive/x");
        Assert.That(get.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.MethodNotAllowed));
    }

    [Test]
    public async Task PublishWithARepeatedIdempotencyKey_Is201_WithIdempotentReplayed_AndEnqueuesNothing()
    {
        var topic = NewTopic("keyed-");
        async Task<HttpResponseMessage> PublishAsync(string body, string key)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, $"publish/{topic}") { Content = new StringContent(body) };
            request.Headers.Add("Idempotency-Key", key);
            return await _client.SendAsync(request);
        }

        using var first = await PublishAsync("order 1", "order-1");
        using var repeat = await PublishAsync("order 1", "order-1");
        using var other = await PublishAsync("order 2", "order-2");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(first.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.Created));
            Assert.That(first.Headers.Contains("Idempotent-Replayed"), Is.False);
            Assert.That(repeat.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.Created));
            Assert.That(repeat.Headers.GetValues("Idempotent-Replayed"), Is.EqualTo(new[] { "true" }));
            Assert.That(other.Headers.Contains("Idempotent-Replayed"), Is.False);
            Assert.That(Engine.GetStats(topic).Ready, Is.EqualTo(2));
        }
    }

    [Test]
    public async Task PublishWithAnEmptyOrTooLongIdempotencyKey_Is400()
    {
        var topic = NewTopic("keyed-");
        foreach (var key in new[] { "", new string('k', 256) })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, $"publish/{topic}") { Content = new StringContent("m") };
            request.Headers.TryAddWithoutValidation("Idempotency-Key", key);
            using var response = await _client.SendAsync(request);

            Assert.That(response.StatusCode, Is.EqualTo(System.Net.HttpStatusCode.BadRequest), $"a key of {key.Length} bytes");
            Assert.That(await response.Content.ReadAsStringAsync(), Is.EqualTo("{\"error\":\"invalid idempotency key\"}\n"));
        }

        Assert.That(Engine.GetTopics(), Does.Not.Contain(topic));
    }
}
