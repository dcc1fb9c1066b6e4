using System.Net;
using Microsoft.AspNetCore.Builder;

namespace MiniQueue.Tests.Http;

/// <summary>Publish, purge, topic names in paths, body limits and routing, over a real Kestrel listener (TLS, HTTP/2).</summary>
[CancelAfter(60_000)]
public sealed class PublishPurgeTests
{
    private MiniQueueTestHost _host = null!;
    private HttpClient _client = null!;

    [OneTimeSetUp]
    public async Task StartServer()
    {
        _host = await MiniQueueTestHost.StartAsync(configureApp: static app => app.MapMiniQueue("/mq"));
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

    private async Task<string> TakeInProcessAsync(string topic)
    {
        await using var consumer = Engine.Subscribe(topic);
        var text = await consumer.ReceiveTextAsync();
        await consumer.AckAsync();
        return text;
    }

    private static async Task AssertErrorAsync(HttpResponseMessage response, HttpStatusCode status, string error)
    {
        using (Assert.EnterMultipleScope())
        {
            Assert.That(response.StatusCode, Is.EqualTo(status));
            Assert.That(await response.Content.ReadAsStringAsync(), Is.EqualTo($"{{\"error\":\"{error}\"}}\n"));
            Assert.That(response.Content.Headers.ContentType?.MediaType, Is.EqualTo("application/json"));
        }
    }

    [Test]
    public async Task Publish_Answers201WithAnEmptyBody_OnceStored()
    {
        var topic = NewTopic();

        using var response = await _client.PostAsync($"mq/publish/{topic}", new StringContent("hello"));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
            Assert.That(response.Version, Is.EqualTo(HttpVersion.Version20));
            Assert.That(await response.Content.ReadAsByteArrayAsync(), Is.Empty);
            Assert.That(Engine.GetStats(topic).Ready, Is.EqualTo(1));
        }

        Assert.That(await TakeInProcessAsync(topic), Is.EqualTo("hello"));
    }

    [Test]
    public async Task Publish_IsBinarySafe_AndMayBeEmpty()
    {
        var topic = NewTopic();
        var binary = Enumerable.Range(0, 256).Select(static i => (byte)i).ToArray();

        using var first = await _client.PostAsync($"mq/publish/{topic}", new ByteArrayContent(binary));
        using var second = await _client.PostAsync($"mq/publish/{topic}", new ByteArrayContent([]));

        Assert.That((first.StatusCode, second.StatusCode), Is.EqualTo((HttpStatusCode.Created, HttpStatusCode.Created)));
        await using var consumer = Engine.Subscribe(topic);
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        Assert.That((await consumer.ReceiveAsync(timeout.Token)).Payload.ToArray(), Is.EqualTo(binary));
        await consumer.AckAsync();
        Assert.That((await consumer.ReceiveAsync(timeout.Token)).Payload.Length, Is.Zero);
    }

    [Test]
    public async Task Publish_StreamedInManyPieces_WithoutContentLength_IsStoredWhole()
    {
        var topic = NewTopic();
        var payload = new byte[3 * 1024 * 1024 + 17];
        new Random(7).NextBytes(payload);

        using var content = new StreamContent(new TrickleStream(payload, 50_000));
        using var response = await _client.PostAsync($"mq/publish/{topic}", content);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
        await using var consumer = Engine.Subscribe(topic);
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        Assert.That((await consumer.ReceiveAsync(timeout.Token)).Payload.ToArray(), Is.EqualTo(payload));
    }

    [Test]
    public async Task Publish_AtTheDefaultMaximum_IsStored_AndOneByteMoreIs413()
    {
        var topic = NewTopic();

        using var atLimit = await _client.PostAsync($"mq/publish/{topic}", new ByteArrayContent(new byte[MiniQueueOptions.DefaultMaxMessageBytes]));
        using var over = await _client.PostAsync($"mq/publish/{topic}", new ByteArrayContent(new byte[MiniQueueOptions.DefaultMaxMessageBytes + 1]));

        Assert.That(atLimit.StatusCode, Is.EqualTo(HttpStatusCode.Created));
        await AssertErrorAsync(over, HttpStatusCode.RequestEntityTooLarge, "message too large");
        Assert.That(Engine.GetStats(topic).Ready, Is.EqualTo(1));
    }

    [Test]
    public async Task Publish_OverTheMaximum_WithoutContentLength_Is413_AndStoresNothing()
    {
        var topic = NewTopic();

        using var content = new StreamContent(new TrickleStream(new byte[MiniQueueOptions.DefaultMaxMessageBytes + 100_000], 64 * 1024));
        using var response = await _client.PostAsync($"mq/publish/{topic}", content);

        await AssertErrorAsync(response, HttpStatusCode.RequestEntityTooLarge, "message too large");
        Assert.That(Engine.GetStats(topic).Ready, Is.Zero);
    }

    [TestCase("a%20b", "a b")]
    [TestCase("d%C3%A9", "dé")]
    [TestCase("%F0%9F%98%80", "\U0001F600")]
    [TestCase("%25FF", "%FF")]
    [TestCase("a+b", "a+b")]
    [TestCase("x-delay-1", "x-delay-1")]
    [TestCase("%2E", ".")]
    [TestCase("a.b", "a.b")]
    [TestCase("%3F%23", "?#")]
    public async Task Publish_DecodesThePercentEncodedTopic(string encoded, string topic)
    {
        // Unique per run: the decoded name gets a random suffix, encoded the same way.
        var suffix = Guid.NewGuid().ToString("N");

        using var response = await _client.PostAsync($"mq/publish/{encoded}{suffix}", new StringContent("x"));

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.Created));
        Assert.That(Engine.GetStats(topic + suffix).Ready, Is.EqualTo(1));
    }

    [TestCase("a%2Fb")]
    [TestCase("a%2fb")]
    [TestCase("%FF")]
    [TestCase("%C3")]
    [TestCase("%ED%A0%80")]
    [TestCase("%7F")]
    [TestCase("%1F")]
    [TestCase("%C2%85")]
    public async Task Publish_ToAnInvalidTopic_Is400_AndCreatesNothing(string encoded)
    {
        var before = Engine.GetTopics().Count;

        using var response = await _client.PostAsync($"mq/publish/{encoded}", new StringContent("x"));

        await AssertErrorAsync(response, HttpStatusCode.BadRequest, "invalid topic value");
        Assert.That(Engine.GetTopics(), Has.Count.EqualTo(before));
    }

    [Test]
    public async Task Publish_ToA256ByteTopic_Is400_And255BytesIsFine()
    {
        var longest = string.Concat(Enumerable.Repeat("%C3%A9", 127)) + "a";
        var tooLong = string.Concat(Enumerable.Repeat("%C3%A9", 128));

        using var ok = await _client.PostAsync($"mq/publish/{longest}", new StringContent("x"));
        using var refused = await _client.PostAsync($"mq/publish/{tooLong}", new StringContent("x"));

        Assert.That(ok.StatusCode, Is.EqualTo(HttpStatusCode.Created));
        await AssertErrorAsync(refused, HttpStatusCode.BadRequest, "invalid topic value");
    }

    [TestCase("POST", "publish/a%00b")]
    [TestCase("POST", "subscribe/a%00b")]
    [TestCase("DELETE", "a%00b")]
    [TestCase("POST", "publish/%00")]
    public async Task Topic_WithAnEncodedNul_IsResetByKestrel_OverHttp2_AndCreatesNothing(string method, string path)
    {
        // docs/PROTOCOL.md, "Topics": "a NUL, %00, may instead be refused by the HTTP server itself: a stream reset on
        // HTTP/2". Kestrel resets the stream (PROTOCOL_ERROR) before the request reaches MiniQueue. A host of its own,
        // so that "nothing exists" means nothing at all.
        await using var host = await MiniQueueTestHost.StartAsync(configureApp: static app => app.MapMiniQueue("/mq"));
        using var client = host.CreateHttpClient();
        using var request = new HttpRequestMessage(new HttpMethod(method), "mq/" + path) { Content = new StringContent("\"INIT\"\n"), Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };

        var refusal = Assert.ThrowsAsync<HttpRequestException>(() => client.SendAsync(request));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(refusal?.InnerException, Is.InstanceOf<HttpProtocolException>().With.Property(nameof(HttpProtocolException.ErrorCode)).EqualTo(0x1L), "PROTOCOL_ERROR");
            Assert.That(host.Engine.GetTopics(), Is.Empty);
            Assert.That(host.Engine.GetTopicsWithStats(), Is.Empty, "no consumer waits for a topic either");
        }
    }

    [TestCase("POST", "publish/a%00b")]
    [TestCase("POST", "subscribe/a%00b")]
    [TestCase("DELETE", "a%00b")]
    public async Task Topic_WithAnEncodedNul_Is400FromKestrel_OverHttp11_AndCreatesNothing(string method, string path)
    {
        await using var host = await MiniQueueTestHost.StartAsync(configureApp: static app => app.MapMiniQueue("/mq"));
        using var client = host.CreateHttpClient(HttpVersion.Version11);
        using var request = new HttpRequestMessage(new HttpMethod(method), "mq/" + path) { Content = new StringContent("x") };

        using var response = await client.SendAsync(request);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest));
            Assert.That(await response.Content.ReadAsStringAsync(), Is.Empty, "Kestrel's own 400, not MiniQueue's");
            Assert.That(host.Engine.GetTopics(), Is.Empty);
            Assert.That(host.Engine.GetTopicsWithStats(), Is.Empty);
        }
    }

    [Test]
    public async Task Publish_AfterTheEngineClosed_Is503()
    {
        await using var host = await MiniQueueTestHost.StartAsync();
        using var client = host.CreateHttpClient();
        await host.Engine.DisposeAsync();

        using var response = await client.PostAsync("publish/t", new StringContent("x"));

        await AssertErrorAsync(response, HttpStatusCode.ServiceUnavailable, "error publishing to broker");
    }

    [Test]
    public async Task Purge_Answers200_DiscardsReadyAndDelayed_AndKeepsHeldMessages()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "held");
        await Engine.PublishAsync(topic, "ready");
        await using var consumer = Engine.Subscribe(topic);
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("held"));

        using var response = await _client.DeleteAsync($"mq/{topic}");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(await response.Content.ReadAsByteArrayAsync(), Is.Empty);
            Assert.That(Engine.GetStats(topic), Is.EqualTo(new TopicStats(Ready: 0, Held: 1, Delayed: 0, Consumers: 1)));
        }

        await consumer.NackAsync();
        Assert.That(Engine.GetStats(topic).Ready, Is.EqualTo(1), "the held message still NACKs back");
    }

    [Test]
    public async Task Purge_OfOneTopic_LeavesTopicsWithRelatedNamesAlone()
    {
        var topic = NewTopic();
        await Engine.PublishAsync(topic, "x");
        await Engine.PublishAsync(topic + "x", "y");

        using var response = await _client.DeleteAsync($"mq/{topic}");

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That((Engine.GetStats(topic).Ready, Engine.GetStats(topic + "x").Ready), Is.EqualTo((0, 1)));
    }

    [Test]
    public async Task Purge_OfAnInvalidTopic_Is400()
    {
        using var response = await _client.DeleteAsync("mq/a%2Fb");

        await AssertErrorAsync(response, HttpStatusCode.BadRequest, "invalid topic value");
    }

    [Test]
    public async Task PublishAndPurge_WorkOverHttp11()
    {
        var topic = NewTopic();
        using var client = _host.CreateHttpClient(HttpVersion.Version11);

        using var published = await client.PostAsync($"mq/publish/{topic}", new StringContent("x"));
        Assert.That(Engine.GetStats(topic).Ready, Is.EqualTo(1));
        using var purged = await client.DeleteAsync($"mq/{topic}");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(published.StatusCode, Is.EqualTo(HttpStatusCode.Created));
            Assert.That(published.Version, Is.EqualTo(HttpVersion.Version11));
            Assert.That(purged.StatusCode, Is.EqualTo(HttpStatusCode.OK));
            Assert.That(Engine.GetStats(topic).Ready, Is.Zero);
        }
    }

    [TestCase("GET", "mq/publish/t")]
    [TestCase("PUT", "mq/publish/t")]
    [TestCase("GET", "mq/subscribe/t")]
    [TestCase("DELETE", "mq/subscribe/t")]
    [TestCase("GET", "mq/t")]
    [TestCase("POST", "mq/t")]
    public async Task KnownPath_WithTheWrongMethod_Is405(string method, string path)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path);

        using var response = await _client.SendAsync(request);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.MethodNotAllowed));
    }

    [TestCase("GET", "nothing")]
    [TestCase("POST", "publish/t")]
    [TestCase("DELETE", "t")]
    [TestCase("POST", "mq/publish/t/extra")]
    [TestCase("POST", "mq/other/t")]
    public async Task UnknownPath_Is404(string method, string path)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = new StringContent("x") };

        using var response = await _client.SendAsync(request);

        Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.NotFound));
    }

    /// <summary>A body that arrives in pieces, with no length known up front.</summary>
    private sealed class TrickleStream(byte[] data, int piece) : Stream
    {
        private int _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var count = Math.Min(Math.Min(piece, buffer.Length), data.Length - _position);
            data.AsSpan(_position, count).CopyTo(buffer);
            _position += count;
            return count;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await Task.Yield();
            return Read(buffer.Span);
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
