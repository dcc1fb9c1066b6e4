using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace MiniQueue.Tests.Http;

/// <summary>
/// The consumer stream of docs/PROTOCOL.md ("POST /subscribe/{topic}: the consumer stream") over a real Kestrel
/// listener (TLS, HTTP/2), one test per rule, with the response lines checked byte for byte. One server for the
/// fixture; every test uses its own topic.
/// </summary>
[CancelAfter(60_000)]
public sealed class SubscribeProtocolTests
{
    private MiniQueueTestHost _host = null!;
    private HttpClient _client = null!;
    private FakeTimeProvider _clock = null!;

    [OneTimeSetUp]
    public async Task StartServer()
    {
        _clock = TestSupport.NewClock();
        _host = await MiniQueueTestHost.StartAsync(builder => builder.Services.AddSingleton<TimeProvider>(_clock));
        _client = _host.CreateHttpClient();
    }

    [OneTimeTearDown]
    public async Task StopServer()
    {
        _client.Dispose();
        await _host.DisposeAsync();
    }

    private static string NewTopic() => "t-" + Guid.NewGuid().ToString("N");

    private MiniQueueEngine Engine => _host.Engine;

    private Task<RawConsumerStream> SubscribeAsync(string topic) => RawConsumerStream.OpenAsync(_client, "subscribe/" + Uri.EscapeDataString(topic));

    private static string MessageLine(string text, int dackCount = 0) => RawConsumerStream.MessageLine(text, dackCount);

    /// <summary>Receives the topic's next message in process, proving it is back in the queue.</summary>
    private async Task<string> TakeInProcessAsync(string topic)
    {
        await using var consumer = Engine.Subscribe(topic);
        var text = await consumer.ReceiveTextAsync();
        await consumer.AckAsync();
        return text;
    }

    [Test]
    public async Task Subscribe_SendsStatusAndHeadersAtOnce_BeforeAnyMessage()
    {
        await using var stream = await SubscribeAsync(NewTopic());

        using (Assert.EnterMultipleScope())
        {
            Assert.That(stream.Response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(stream.Response.Version, Is.EqualTo(HttpVersion.Version20));
            Assert.That(stream.Response.Content.Headers.ContentType?.ToString(), Is.EqualTo("text/plain; charset=utf-8"));
        }
    }

    [Test]
    public async Task Init_DeliversMessage_AsBase64Line()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "hello");
        await using var stream = await SubscribeAsync(topic);

        await stream.SendAsync("\"INIT\"\n");

        Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"msg\":\"aGVsbG8=\"}\n"));
    }

    [Test]
    public async Task EmptyMessage_IsAnEmptyMsg()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, ReadOnlyMemory<byte>.Empty);
        await using var stream = await SubscribeAsync(topic);

        await stream.SendAsync("\"INIT\"\n");

        Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"msg\":\"\"}\n"));
    }

    [Test]
    public async Task BinaryMessage_ArrivesExactly()
    {
        var topic = NewTopic();
        var payload = Enumerable.Range(0, 256).Select(static i => (byte)i).ToArray();
        await Engine.PublishAsync(topic, payload);
        await using var stream = await SubscribeAsync(topic);

        await stream.SendAsync("\"INIT\"\n");

        Assert.That(await stream.ReadLineAsync(), Is.EqualTo($"{{\"msg\":\"{Convert.ToBase64String(payload)}\"}}\n"));
    }

    [Test]
    public async Task Init_OnTopicThatDoesNotExistYet_WaitsForItsFirstPublish()
    {
        var topic = NewTopic();
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        var line = stream.ReadLineAsync();
        Assert.That(await TestSupport.StaysPendingAsync(line), Is.True, "nothing to deliver yet");

        await Engine.PublishAsync(topic, "first");

        Assert.That(await line, Is.EqualTo(MessageLine("first")));
    }

    [Test]
    public async Task Ack_RemovesTheMessage_AndDeliversTheNext()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "one");
        await Engine.PublishAsync(topic, "two");
        await using var stream = await SubscribeAsync(topic);

        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("one")));
        await stream.SendAsync("\"ACK\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("two")));

        Assert.That(Engine.GetStats(topic), Is.EqualTo(new TopicStats(Ready: 0, Held: 1, Delayed: 0, Consumers: 1)));
    }

    [Test]
    public async Task InitAndAck_SentAtOnce_AreHandledInOrder_AsTheGoEchoExampleRelies()
    {
        // The Go echo example encodes "INIT" and "ACK" into one body before the topic has a message.
        var topic = NewTopic();
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n\"ACK\"\n");
        var first = stream.ReadLineAsync();
        Assert.That(await TestSupport.StaysPendingAsync(first), Is.True);

        await Engine.PublishAsync(topic, "m1");
        await Engine.PublishAsync(topic, "m2");

        // ACK applies to m1, delivered by INIT; then m2 is delivered.
        Assert.That(await first, Is.EqualTo(MessageLine("m1")));
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("m2")));
        Assert.That(Engine.GetStats(topic), Is.EqualTo(new TopicStats(Ready: 0, Held: 1, Delayed: 0, Consumers: 1)));
    }

    [Test]
    public async Task Nack_ReturnsMessageToFront_AndHandsItToAWaitingConsumer()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "m1");
        await using var first = await SubscribeAsync(topic);
        await first.SendAsync("\"INIT\"\n");
        Assert.That(await first.ReadLineAsync(), Is.EqualTo(MessageLine("m1")));
        await using var second = await SubscribeAsync(topic);
        await second.SendAsync("\"INIT\"\n");
        var secondLine = second.ReadLineAsync();
        Assert.That(await TestSupport.StaysPendingAsync(secondLine), Is.True);

        await first.SendAsync("\"NACK\"\n");

        Assert.That(await secondLine, Is.EqualTo(MessageLine("m1")));
        await Engine.PublishAsync(topic, "m2");
        Assert.That(await first.ReadLineAsync(), Is.EqualTo(MessageLine("m2")));
    }

    [Test]
    public async Task Back_ReturnsMessageToTheBack()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "m1");
        await Engine.PublishAsync(topic, "m2");
        await using var stream = await SubscribeAsync(topic);

        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("m1")));
        await stream.SendAsync("\"BACK\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("m2")));
        await stream.SendAsync("\"ACK\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("m1")));
    }

    [Test]
    public async Task Dack_DelaysByWholeSeconds_OnTheClockFromDI_AndCountsTheDelay()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "hi");
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"msg\":\"aGk=\"}\n"));

        await stream.SendAsync("\"DACK 10\"\n");
        var next = stream.ReadLineAsync();
        await WaitForAsync(() => Engine.GetStats(topic).Delayed == 1);
        _clock.Advance(TimeSpan.FromSeconds(9));
        Assert.That(Engine.GetStats(topic), Is.EqualTo(new TopicStats(Ready: 0, Held: 0, Delayed: 1, Consumers: 1)), "not due before 10 s");

        _clock.Advance(TimeSpan.FromSeconds(1));

        Assert.That(await next, Is.EqualTo("{\"msg\":\"aGk=\",\"dackCount\":1}\n"));
        await stream.SendAsync("\"DACK 0\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"msg\":\"aGk=\",\"dackCount\":2}\n"));
    }

    [TestCase("DACK 0")]
    [TestCase("DACK -5")]
    [TestCase("DACK +0")]
    [TestCase("DACK -2147483648")]
    [TestCase("DACK 0 and more words")]
    public async Task Dack_OfZeroOrLess_IsDueAtOnce(string command)
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "hi");
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"msg\":\"aGk=\"}\n"));

        await stream.SendAsync($"\"{command}\"\n");

        Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"msg\":\"aGk=\",\"dackCount\":1}\n"));
    }

    [Test]
    public async Task Dack_WithLargestDelay_KeepsTheMessageDelayed()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "hi");
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        await stream.ReadLineAsync();

        await stream.SendAsync("\"DACK 2147483647\"\n");

        await WaitForAsync(() => Engine.GetStats(topic).Delayed == 1);
        Assert.That(Engine.GetStats(topic), Is.EqualTo(new TopicStats(Ready: 0, Held: 0, Delayed: 1, Consumers: 1)));
    }

    [Test]
    public async Task Init_WhileHolding_IsAnError_AndTheStreamGoesOn()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "m1");
        await Engine.PublishAsync(topic, "m2");
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("m1")));

        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"error\":\"error getting next value for consumer\"}\n"));

        await stream.SendAsync("\"ACK\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("m2")));
    }

    [TestCase("ACK", "error ACKing message")]
    [TestCase("NACK", "error NACKing message")]
    [TestCase("BACK", "error BACKing message")]
    [TestCase("DACK 5", "error DACKing message")]
    public async Task Settling_WhileHoldingNothing_IsAnError_AndTheStreamGoesOn(string command, string error)
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "m1");
        await using var other = Engine.Subscribe(topic);
        await using var stream = await SubscribeAsync(topic);

        // First command: the Go program settled another consumer's message here.
        await stream.SendAsync($"\"{command}\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo($"{{\"error\":\"{error}\"}}\n"));

        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("m1")));
        Assert.That(other.IsHoldingMessage, Is.False);
    }

    [TestCase("\"HELLO\"")]
    [TestCase("\"ack\"")]
    [TestCase("\"Init\"")]
    [TestCase("\"\"")]
    [TestCase("\" ACK\"")]
    [TestCase("\"ACKNOWLEDGE\"")]
    [TestCase("\"ACK\\tx\"")]
    [TestCase("null")]
    public async Task UnknownCommand_IsAnError_AndTheStreamGoesOn(string command)
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "m1");
        await using var stream = await SubscribeAsync(topic);

        await stream.SendAsync(command + "\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"error\":\"unrecognised command received\"}\n"));

        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("m1")));
    }

    [Test]
    public async Task ExtraWords_AfterACK_AreIgnored()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "m1");
        await Engine.PublishAsync(topic, "m2");
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        await stream.ReadLineAsync();

        await stream.SendAsync("\"ACK it was fine\"\n");

        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("m2")));
        Assert.That(Engine.GetStats(topic).Ready, Is.Zero);
    }

    [TestCase("\"INIT\"\r\n", TestName = "CRLF")]
    [TestCase("  \t\r\n\"INIT\"", TestName = "WhitespaceBefore_NoNewlineAfter")]
    [TestCase("\"\\u0049NIT\"\n", TestName = "EscapedLetter")]
    [TestCase("\"INIT\\u0020x\"\n", TestName = "EscapedSpaceThenWord")]
    public async Task Commands_AcceptAnyJsonWhitespace_AndEscapes(string init)
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "m1");
        await using var stream = await SubscribeAsync(topic);

        await stream.SendAsync(init);

        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("m1")));
    }

    [Test]
    public async Task Command_SplitAcrossWrites_IsActedOnWhenItsClosingQuoteArrives()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "m1");
        await using var stream = await SubscribeAsync(topic);

        foreach (var piece in new[] { " ", "\"", "I", "N", "I" })
        {
            await stream.SendAsync(piece);
        }

        var line = stream.ReadLineAsync();
        Assert.That(await TestSupport.StaysPendingAsync(line), Is.True, "no closing quote yet");
        await stream.SendAsync("T\"");

        Assert.That(await line, Is.EqualTo(MessageLine("m1")));
    }

    [TestCase("5")]
    [TestCase("{\"cmd\":\"INIT\"}")]
    [TestCase("[\"INIT\"]")]
    [TestCase("true")]
    [TestCase("ACK")]
    [TestCase("\"ACK")]
    [TestCase("'ACK'")]
    [TestCase("\"bad \\q escape\"")]
    [TestCase("\"lone \\ud800 surrogate\"")]
    public async Task NotAJsonString_IsADecodingError_ThatClosesTheStream_AndReturnsTheHeldMessage(string garbage)
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "held");
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("held")));

        // The garbage is followed by the end of the body, so a value still open is invalid JSON too.
        await stream.SendAsync(garbage + "\n");
        stream.EndBody();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"error\":\"error decoding command\"}\n"));
            Assert.That(await stream.ReadLineAsync(), Is.Null, "the stream closes");
            Assert.That(await TakeInProcessAsync(topic), Is.EqualTo("held"));
        }
    }

    [Test]
    public async Task InvalidUtf8_InACommand_IsADecodingError()
    {
        var topic = NewTopic();
        await using var stream = await SubscribeAsync(topic);

        await stream.SendBytesAsync([(byte)'"', (byte)'A', 0xFF, (byte)'"', (byte)'\n']);

        Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"error\":\"error decoding command\"}\n"));
        Assert.That(await stream.ReadLineAsync(), Is.Null);
    }

    [Test]
    public async Task HugeCommand_IsADecodingError_NotUnboundedBuffering()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "held");
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        await stream.ReadLineAsync();

        // 1 MiB of a string that never closes; the server gives up after 64 KiB. The write may fail once the
        // server has closed the stream, which is fine.
        var chunk = "\"" + new string('A', 64 * 1024);
        try
        {
            for (var i = 0; i < 16; i++)
            {
                await stream.SendAsync(chunk[(i == 0 ? 0 : 1)..]);
            }
        }
        catch (Exception exception)
        {
            // Which exception a write into a stream the server has closed throws depends on timing; any will do.
            TestContext.Out.WriteLine($"write ended: {exception.GetType().Name}: {exception.Message}");
        }

        using (Assert.EnterMultipleScope())
        {
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"error\":\"error decoding command\"}\n"));
            Assert.That(await stream.ReadLineAsync(), Is.Null);
            Assert.That(await TakeInProcessAsync(topic), Is.EqualTo("held"));
        }
    }

    [TestCase("DACK", "too few arguments provided to DACK")]
    [TestCase("DACK x", "invalid DACK duration argument at position [1]")]
    [TestCase("DACK ", "invalid DACK duration argument at position [1]")]
    [TestCase("DACK  5", "invalid DACK duration argument at position [1]")]
    [TestCase("DACK 1.5", "invalid DACK duration argument at position [1]")]
    [TestCase("DACK 2147483648", "invalid DACK duration argument at position [1]")]
    [TestCase("DACK 0x10", "invalid DACK duration argument at position [1]")]
    [TestCase("DACK \u0661", "invalid DACK duration argument at position [1]")]
    public async Task BadDackArgument_IsAnError_ThatClosesTheStream_AndReturnsTheHeldMessage(string command, string error)
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "held");
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("held")));

        await stream.SendAsync($"\"{command}\"\n\"ACK\"\n");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo($"{{\"error\":\"{error}\"}}\n"));
            Assert.That(await stream.ReadLineAsync(), Is.Null, "the stream closes; the ACK after it is not read");
            Assert.That(await TakeInProcessAsync(topic), Is.EqualTo("held"));
        }
    }

    [Test]
    public async Task EndOfBody_WhileHolding_EndsTheStream_AndReturnsTheMessageToTheFront()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "m1");
        await Engine.PublishAsync(topic, "m2");
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("m1")));

        stream.EndBody();

        using (Assert.EnterMultipleScope())
        {
            Assert.That(await stream.ReadLineAsync(), Is.Null);
            Assert.That(await TakeInProcessAsync(topic), Is.EqualTo("m1"), "back at the front, ahead of m2");
        }
    }

    [Test]
    public async Task EndOfBody_IsHandledInOrder_AfterTheDeliveryItFollows()
    {
        var topic = NewTopic();
        await using var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        stream.EndBody();
        var line = stream.ReadLineAsync();
        Assert.That(await TestSupport.StaysPendingAsync(line), Is.True, "INIT is still waiting for a message");

        await Engine.PublishAsync(topic, "m1");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(await line, Is.EqualTo(MessageLine("m1")), "INIT finishes first");
            Assert.That(await stream.ReadLineAsync(), Is.Null, "then the end of the body ends the stream");
            Assert.That(await TakeInProcessAsync(topic), Is.EqualTo("m1"), "and the message returns");
        }
    }

    [Test]
    public async Task ResetStream_WhileHolding_ReturnsTheMessage()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "held");
        var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("held")));

        stream.Reset();

        Assert.That(await TakeInProcessAsync(topic), Is.EqualTo("held"));
        await WaitForAsync(() => Engine.GetStats(topic).Consumers == 0);
    }

    [Test]
    public async Task ResetStream_WhileWaiting_RemovesTheConsumer_AndLosesNothing()
    {
        var topic = NewTopic();
        var stream = await SubscribeAsync(topic);
        await stream.SendAsync("\"INIT\"\n\"ACK\"\n");

        stream.Reset();
        await WaitForAsync(() => Engine.GetStats(topic).Consumers == 0);
        await Engine.PublishAsync(topic, "later");

        Assert.That(await TakeInProcessAsync(topic), Is.EqualTo("later"));
    }

    [Test]
    public async Task ConnectionLoss_WhileHolding_ReturnsTheMessage()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "held");
        Socket? socket = null;
        using var client = _host.CreateHttpClient(onConnect: connected => socket = connected);
        var stream = await RawConsumerStream.OpenAsync(client, "subscribe/" + topic);
        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(MessageLine("held")));

        // An abrupt loss: the socket is closed with a TCP reset, no HTTP/2 frame says goodbye.
        socket!.LingerState = new LingerOption(enable: true, seconds: 0);
        socket.Close();

        Assert.That(await TakeInProcessAsync(topic), Is.EqualTo("held"));
        await WaitForAsync(() => Engine.GetStats(topic).Consumers == 0);
    }

    [Test]
    public async Task ManyConsumers_OnOneConnection_EachGetAMessage()
    {
        // More than Kestrel's default of 100 streams per connection: AddMiniQueue raises the limit.
        const int consumers = 120;
        var topic = NewTopic();
        using var client = new HttpClient(new SocketsHttpHandler
        {
            EnableMultipleHttp2Connections = false,
            SslOptions = { RemoteCertificateValidationCallback = TestCertificate.Validation },
        })
        {
            BaseAddress = _host.BaseAddress,
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TestSupport.Bound,
        };
        var streams = new List<RawConsumerStream>();
        try
        {
            for (var i = 0; i < consumers; i++)
            {
                var stream = await RawConsumerStream.OpenAsync(client, "subscribe/" + topic);
                streams.Add(stream);
                await stream.SendAsync("\"INIT\"\n");
            }

            for (var i = 0; i < consumers; i++)
            {
                await Engine.PublishAsync(topic, $"m{i}");
            }

            var lines = await Task.WhenAll(streams.Select(static stream => stream.ReadLineAsync()));

            Assert.That(lines, Is.EquivalentTo(Enumerable.Range(0, consumers).Select(static i => MessageLine($"m{i}"))));
        }
        finally
        {
            foreach (var stream in streams)
            {
                await stream.DisposeAsync();
            }
        }
    }

    [Test]
    public async Task Subscribe_OverHttp11_IsRefused_WithAClearError()
    {
        using var client = _host.CreateHttpClient(HttpVersion.Version11);
        using var response = await client.PostAsync("subscribe/" + NewTopic(), new StringContent("\"INIT\"\n"));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.HttpVersionNotSupported));
            Assert.That(await response.Content.ReadAsStringAsync(), Is.EqualTo("{\"error\":\"subscribe needs HTTP/2\"}\n"));
        }
    }

    [TestCase("a%2Fb")]
    [TestCase("%FF")]
    [TestCase("x%C2%85")]
    public async Task Subscribe_ToAnInvalidTopic_Is400(string encoded)
    {
        using var response = await _client.PostAsync("subscribe/" + encoded, new StringContent("\"INIT\"\n"));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(await response.Content.ReadAsStringAsync(), Is.EqualTo("{\"error\":\"invalid topic value\"}\n"));
        }
    }

    [Test]
    public async Task LargeMessage_IsWrittenWhole()
    {
        var topic = NewTopic();
        var payload = new byte[MiniQueueOptions.DefaultMaxMessageBytes];
        new Random(42).NextBytes(payload);
        await Engine.PublishAsync(topic, payload);
        await using var stream = await SubscribeAsync(topic);

        await stream.SendAsync("\"INIT\"\n");

        Assert.That(await stream.ReadLineAsync(), Is.EqualTo($"{{\"msg\":\"{Convert.ToBase64String(payload)}\"}}\n"));
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        while (!condition())
        {
            await Task.Delay(10, timeout.Token);
        }
    }
}
