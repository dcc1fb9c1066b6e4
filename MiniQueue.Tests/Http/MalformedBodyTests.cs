using Microsoft.AspNetCore.Builder;

namespace MiniQueue.Tests.Http;

/// <summary>
/// Requests whose body cannot be read (a malformed HTTP/1.1 chunked body) over raw TLS connections to a real Kestrel:
/// never a success status, nothing enqueued, nothing purged.
/// </summary>
[CancelAfter(60_000)]
public sealed class MalformedBodyTests
{
    // Each body is sent after "Transfer-Encoding: chunked" headers; Kestrel fails the body read in a different way for each.
    private static readonly TestCaseData[] s_malformedBodies =
    [
        // The size does not fit an int: Kestrel throws an IOException, not a BadHttpRequestException.
        new TestCaseData("FFFFFFFFFFFFFFFFFFFF\r\nhello\r\n0\r\n\r\n").SetArgDisplayNames("overflowing chunk size"),
        new TestCaseData("80000000\r\nhello\r\n0\r\n\r\n").SetArgDisplayNames("chunk size one over int.MaxValue"),
        new TestCaseData("xyz\r\nhello\r\n0\r\n\r\n").SetArgDisplayNames("non-hex chunk size"),
        new TestCaseData("00000000005\r\nhello\r\n0\r\n\r\n").SetArgDisplayNames("chunk size line too long"),
        new TestCaseData("5\r\nhelloXX0\r\n\r\n").SetArgDisplayNames("missing CRLF after the chunk data"),
        new TestCaseData("5\r\nhello\r\nzz\r\n0\r\n\r\n").SetArgDisplayNames("a good chunk, then a non-hex size"),
        new TestCaseData("5\r\nhello\r\n0\r\nnot a header\r\n\r\n").SetArgDisplayNames("malformed trailer"),
    ];

    private MiniQueueTestHost _host = null!;

    [OneTimeSetUp]
    public async Task StartServer() => _host = await MiniQueueTestHost.StartAsync(configureApp: static app => app.MapMiniQueue("/mq"));

    [OneTimeTearDown]
    public async Task StopServer() => await _host.DisposeAsync();

    private static string NewTopic() => "t-" + Guid.NewGuid().ToString("N");

    private static string ChunkedRequest(string method, string path) =>
        $"{method} {path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";

    private async Task<RawHttp1Response?> SendAsync(string head, string body)
    {
        await using var connection = await RawHttp1Connection.OpenAsync(_host.BaseAddress, TestCertificate.Validation);
        await connection.SendAsync(head + body);
        return await connection.ReadResponseAsync();
    }

    [TestCaseSource(nameof(s_malformedBodies))]
    public async Task Publish_WithAMalformedChunkedBody_Is400WithAnError_AndEnqueuesNothing(string body)
    {
        var topic = NewTopic();

        var response = await SendAsync(ChunkedRequest("POST", $"/mq/publish/{topic}"), body);

        Assert.That(response, Is.Not.Null, "the server answers before it closes");
        using (Assert.EnterMultipleScope())
        {
            Assert.That(response!.StatusCode, Is.EqualTo(400));
            Assert.That(response.Body, Is.EqualTo("{\"error\":\"invalid request body\"}\n"));
            Assert.That(_host.Engine.GetStats(topic), Is.EqualTo(default(TopicStats)));
            Assert.That(_host.Engine.GetTopics(), Does.Not.Contain(topic));
        }
    }

    [Test]
    public async Task Publish_WithAWellFormedChunkedBody_IsStored()
    {
        // The raw connection itself is right: the same request with a good body is published.
        var topic = NewTopic();

        var response = await SendAsync(ChunkedRequest("POST", $"/mq/publish/{topic}"), "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");

        Assert.That(response?.StatusCode, Is.EqualTo(201));
        await using var consumer = _host.Engine.Subscribe(topic);
        Assert.That(await consumer.ReceiveTextAsync(), Is.EqualTo("hello world"));
    }

    [TestCase("5\r\nhel")]
    [TestCase("5\r\nhello\r\n")]
    [TestCase("5")]
    public async Task Publish_WithATruncatedChunkedBody_ThenClose_IsNeverASuccess_AndEnqueuesNothing(string body)
    {
        var topic = NewTopic();
        await using var connection = await RawHttp1Connection.OpenAsync(_host.BaseAddress, TestCertificate.Validation);
        await connection.SendAsync(ChunkedRequest("POST", $"/mq/publish/{topic}") + body);

        await connection.CloseSendingAsync();
        var response = await connection.ReadResponseAsync();

        // Kestrel closes the connection without an answer when the body ends early (were there one, it must be a 4xx).
        using (Assert.EnterMultipleScope())
        {
            Assert.That(response?.StatusCode ?? 400, Is.InRange(400, 499));
            Assert.That(_host.Engine.GetStats(topic), Is.EqualTo(default(TopicStats)));
            Assert.That(_host.Engine.GetTopics(), Does.Not.Contain(topic));
        }
    }

    [TestCaseSource(nameof(s_malformedBodies))]
    public async Task Purge_WithAMalformedChunkedBody_Is400_AndPurgesNothing(string body)
    {
        var topic = NewTopic();
        await _host.Engine.PublishAsync(topic, "kept");

        var response = await SendAsync(ChunkedRequest("DELETE", $"/mq/{topic}"), body);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(response?.StatusCode, Is.EqualTo(400));
            Assert.That(_host.Engine.GetStats(topic).Ready, Is.EqualTo(1));
        }
    }

    [Test]
    public async Task Subscribe_OverHttp11_WithAMalformedChunkedBody_IsRefused_AndTakesNothing()
    {
        var topic = NewTopic();
        await _host.Engine.PublishAsync(topic, "kept");

        var response = await SendAsync(ChunkedRequest("POST", $"/mq/subscribe/{topic}"), "7\r\n\"INIT\"\n\r\nFFFFFFFFFFFFFFFFFFFF\r\n");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(response?.StatusCode, Is.EqualTo(505));
            Assert.That(_host.Engine.GetStats(topic), Is.EqualTo(new TopicStats(Ready: 1, Held: 0, Delayed: 0, Consumers: 0)));
        }
    }
}
