using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using MiniQueue.Http.Hosting;
using MiniQueue.Storage;
using Moq;

namespace MiniQueue.Tests.Http;

/// <summary>A store that fails (Moq at the engine's store seam) surfaces over HTTP as the protocol's errors, losing nothing.</summary>
[CancelAfter(60_000)]
public sealed class StoreFaultTests
{
    private static async Task<MiniQueueTestHost> StartOverAsync(Mock<ILogStore> store) =>
        await MiniQueueTestHost.StartAsync(builder => builder.Services.AddSingleton(
            new MiniQueueEngineOpener((_, options, cancellationToken) => MiniQueueEngine.OpenAsync(options, store.Object, cancellationToken))));

    private static Mock<ILogStore> NewStore()
    {
        var store = new Mock<ILogStore>();
        store.Setup(s => s.ReplayAsync(It.IsAny<CancellationToken>())).Returns(AsyncEnumerable.Empty<StoredRecord>());
        store.Setup(s => s.IsCommitted(It.IsAny<long>())).Returns(true);
        store.Setup(s => s.HasRoom).Returns(true);
        return store;
    }

    [Test]
    public async Task Publish_WhenTheStoreCannotTakeIt_Is503_AndNothingIsPublished()
    {
        var store = NewStore();
        var durable = ValueTask.CompletedTask;
        store.Setup(s => s.AppendPublish(It.IsAny<LogRecord>(), out durable)).Throws(new IOException("No space left on device"));
        await using var host = await StartOverAsync(store);
        using var client = host.CreateHttpClient();

        using var response = await client.PostAsync("publish/t", new StringContent("x"));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(await response.Content.ReadAsStringAsync(), Is.EqualTo("{\"error\":\"error publishing to broker\"}\n"));
            Assert.That(host.Engine.GetTopics(), Is.Empty);
        }
    }

    [Test]
    public async Task Purge_WhenTheStoreCannotRecordIt_Is503()
    {
        var store = NewStore();
        var durable = ValueTask.CompletedTask;
        store.Setup(s => s.AppendPublish(It.IsAny<LogRecord>(), out durable)).Returns(1);
        store.Setup(s => s.Append(It.Is<LogRecord>(r => r.Kind == LogRecordKind.Purge))).Throws(new IOException("disk full"));
        await using var host = await MiniQueueTestHost.StartAsync(
            builder => builder.Services.AddSingleton(
                new MiniQueueEngineOpener((_, options, cancellationToken) => MiniQueueEngine.OpenAsync(options, store.Object, cancellationToken))),
            static app => app.MapMiniQueue("/mq"));
        using var client = host.CreateHttpClient();
        await host.Engine.PublishAsync("t", "x");

        using var response = await client.DeleteAsync("mq/t");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(response.StatusCode, Is.EqualTo(HttpStatusCode.ServiceUnavailable));
            Assert.That(await response.Content.ReadAsStringAsync(), Is.EqualTo("{\"error\":\"failed to purge topic\"}\n"));
            Assert.That(host.Engine.GetStats("t").Ready, Is.EqualTo(1), "nothing was purged");
        }
    }

    [Test]
    public async Task Subscribe_WhenTheStoreCannotReadTheMessageBack_SaysSo_ClosesTheStream_AndTheMessageStays()
    {
        var store = NewStore();
        store.Setup(s => s.CanRead).Returns(true);
        store.Setup(s => s.Append(It.IsAny<LogRecord>())).Returns(1);
        var durable = ValueTask.CompletedTask;
        store.Setup(s => s.AppendPublish(It.IsAny<LogRecord>(), out durable)).Returns(1);
        store.Setup(s => s.ReadAsync(It.IsAny<long>(), It.IsAny<int>(), It.IsAny<CancellationToken>()))
            .Returns(() => ValueTask.FromException<ReadOnlyMemory<byte>>(new IOException("bad sector")));

        // No body cache, so the body must be read back from the store.
        await using var host = await MiniQueueTestHost.StartAsync(builder => builder.Services.AddSingleton(
            new MiniQueueEngineOpener((_, options, cancellationToken) =>
            {
                options.BodyCacheBytes = 0;
                return MiniQueueEngine.OpenAsync(options, store.Object, cancellationToken);
            })));
        using var client = host.CreateHttpClient();
        await host.Engine.PublishAsync("t", "x");
        await using var stream = await RawConsumerStream.OpenAsync(client, "subscribe/t");

        await stream.SendAsync("\"INIT\"\n");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(await stream.ReadLineAsync(), Is.EqualTo("{\"error\":\"error getting next value for consumer\"}\n"));
            Assert.That(await stream.ReadLineAsync(), Is.Null);
        }

        await WaitForAsync(() => host.Engine.GetStats("t").Consumers == 0);
        Assert.That(host.Engine.GetStats("t"), Is.EqualTo(new TopicStats(Ready: 1, Held: 0, Delayed: 0, Consumers: 0)));
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

/// <summary>The health check that AddHealthChecks().AddMiniQueue() adds, over a real Kestrel.</summary>
[CancelAfter(30_000)]
public sealed class HealthCheckTests
{
    [TestCase(false, HttpStatusCode.OK, "Healthy")]
    [TestCase(true, HttpStatusCode.ServiceUnavailable, "Unhealthy")]
    public async Task Healthz_FollowsWhetherTheStoreTakesRecords(bool faulted, HttpStatusCode status, string body)
    {
        var store = new Mock<ILogStore>();
        store.Setup(s => s.ReplayAsync(It.IsAny<CancellationToken>())).Returns(AsyncEnumerable.Empty<StoredRecord>());
        store.Setup(s => s.HasRoom).Returns(true);
        store.Setup(s => s.IsFaulted).Returns(faulted);
        await using var host = await MiniQueueTestHost.StartAsync(
            builder =>
            {
                builder.Services.AddSingleton(new MiniQueueEngineOpener((_, options, cancellationToken) => MiniQueueEngine.OpenAsync(options, store.Object, cancellationToken)));
                builder.Services.AddHealthChecks().AddMiniQueue();
            },
            static app =>
            {
                app.MapHealthChecks("/healthz");
                app.MapMiniQueue();
            });
        using var client = host.CreateHttpClient();

        using var response = await client.GetAsync("healthz");

        Assert.That(response.StatusCode, Is.EqualTo(status));
        Assert.That(await response.Content.ReadAsStringAsync(), Is.EqualTo(body));
    }
}
