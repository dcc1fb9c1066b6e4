using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using MiniQueue.Http.Protocol;

namespace MiniQueue.Tests.Http;

/// <summary>
/// How a request names its topic: the last segment of the raw target, percent-decoded as UTF-8, checked against the
/// path the router saw. Targets an HTTP client would never send (a bare '%') are covered here.
/// </summary>
public sealed class TopicRouteTests
{
    private static DefaultHttpContext Request(string rawTarget, string decodedPath, string? routeTopic = null)
    {
        var context = new DefaultHttpContext();
        context.Features.Get<IHttpRequestFeature>()!.RawTarget = rawTarget;
        context.Request.Path = decodedPath;
        if (routeTopic is not null)
        {
            context.Request.RouteValues["topic"] = routeTopic;
        }

        return context;
    }

    [TestCase("/publish/orders", "/publish/orders", "orders")]
    [TestCase("/publish/a%20b", "/publish/a b", "a b")]
    [TestCase("/publish/d%C3%A9", "/publish/dé", "dé")]
    [TestCase("/publish/d%c3%a9", "/publish/dé", "dé")]
    [TestCase("/publish/%25FF", "/publish/%FF", "%FF")]
    [TestCase("/mq/publish/x?ignored=1", "/mq/publish/x", "x")]
    [TestCase("https://example.com/publish/x", "/publish/x", "x")]
    [TestCase("/publish/dé", "/publish/dé", "dé")]
    public void ValidTopics_AreDecoded(string raw, string path, string topic)
    {
        Assert.That(TopicRoute.GetTopic(Request(raw, path)), Is.EqualTo(topic));
    }

    [TestCase("/publish/a%2Fb", "/publish/a%2Fb")]
    [TestCase("/publish/%", "/publish/%")]
    [TestCase("/publish/%4", "/publish/%4")]
    [TestCase("/publish/%GG", "/publish/%GG")]
    [TestCase("/publish/%FF", "/publish/%FF")]
    [TestCase("/publish/%C3", "/publish/%C3")]
    [TestCase("/publish/%00", "/publish/\0")]
    [TestCase("/publish/x/", "/publish/x/")]
    [TestCase("/publish/x/.", "/publish/x")]
    [TestCase("/publish/", "/publish/")]
    [TestCase("*", "/")]
    public void InvalidOrMismatchedTopics_AreNull(string raw, string path)
    {
        Assert.That(TopicRoute.GetTopic(Request(raw, path)), Is.Null);
    }

    [Test]
    public void ARouteValueEqualToTheRawName_IsReused()
    {
        var routed = new string("orders".AsSpan());

        Assert.That(TopicRoute.GetTopic(Request("/publish/orders", "/publish/orders", routed)), Is.SameAs(routed));
    }

    [Test]
    public void NamesOver255Bytes_AreNull()
    {
        var tooLong = string.Concat(Enumerable.Repeat("%C3%A9", 128));

        Assert.That(TopicRoute.GetTopic(Request("/publish/" + tooLong, "/publish/" + new string('é', 128))), Is.Null);
    }
}
