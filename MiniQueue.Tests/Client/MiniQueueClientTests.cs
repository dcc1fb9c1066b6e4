using System.Net;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using MiniQueue.Client;
using MiniQueue.Tests.Http;

namespace MiniQueue.Tests.Client;

/// <summary>MiniQueueClient against a real MiniQueue server (Kestrel, TLS, HTTP/2), mounted under a prefix.</summary>
[CancelAfter(60_000)]
public sealed class MiniQueueClientTests
{
    private MiniQueueTestHost _host = null!;
    private MiniQueueClient _client = null!;
    private FakeTimeProvider _clock = null!;

    [OneTimeSetUp]
    public async Task StartServer()
    {
        _clock = TestSupport.NewClock();
        _host = await MiniQueueTestHost.StartAsync(
            builder =>
            {
                builder.Services.AddSingleton<TimeProvider>(_clock);
                builder.Services.Configure<MiniQueueOptions>(static options =>
                    options.TopicPolicies.Add(new MiniQueueTopicPolicy { Topics = "leased-*", Lease = TimeSpan.FromSeconds(30) }));
            },
            static app => app.MapMiniQueue("/mq"));
        _client = _host.CreateClient("mq");
    }

    [OneTimeTearDown]
    public async Task StopServer()
    {
        _client.Dispose();
        await _host.DisposeAsync();
    }

    private static string NewTopic() => "t-" + Guid.NewGuid().ToString("N");

    private MiniQueueEngine Engine => _host.Engine;

    private static string Text(MiniQueueMessage message) => Encoding.UTF8.GetString(message.Body.Span);

    private static async Task<MiniQueueMessage> ReceiveAsync(MiniQueueSubscription subscription)
    {
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        return await subscription.ReceiveAsync(timeout.Token);
    }

    private async Task<string> TakeInProcessAsync(string topic)
    {
        await using var consumer = Engine.Subscribe(topic);
        var text = await consumer.ReceiveTextAsync();
        await consumer.AckAsync();
        return text;
    }

    [Test]
    public async Task ALeaseThatPassed_IsTakenInStride_TheSettleDidNothing_AndTheMessageComesAgain()
    {
        var topic = "leased-" + Guid.NewGuid().ToString("N");
        await _client.PublishAsync(topic, "slow work"u8.ToArray());
        await using var subscription = await _client.SubscribeAsync(topic);
        Assert.That(Text(await ReceiveAsync(subscription)), Is.EqualTo("slow work"));

        // (No TOUCH before the clock moves: the server does not answer one, so it might renew the lease after the move.)
        _clock.Advance(TimeSpan.FromSeconds(30));
        Assert.That(Engine.GetStats(topic).Held, Is.Zero, "the lease passed: the message is back at the front");

        // The subscription does not know yet: its TOUCH and ACK are answered with errors, which it takes in.
        await subscription.TouchAsync();
        await subscription.AckAsync();
        await _client.PublishAsync(topic, "next"u8.ToArray());
        Assert.That(Text(await ReceiveAsync(subscription)), Is.EqualTo("slow work"), "delivered again: the ACK came too late");
        Assert.That(subscription.ExpiredLeases, Is.EqualTo(1));
        await subscription.AckAsync();
        Assert.That(Text(await ReceiveAsync(subscription)), Is.EqualTo("next"));
        Assert.That(subscription.ExpiredLeases, Is.EqualTo(1));
    }

    [Test]
    public async Task PublishOptions_DelayAndIdempotencyKey_AndRedrive()
    {
        var topic = NewTopic();
        await _client.PublishAsync(topic, "later"u8.ToArray(), new MiniQueuePublishOptions { Delay = TimeSpan.FromMilliseconds(1500) });
        var first = await _client.PublishAsync(topic, "once"u8.ToArray(), new MiniQueuePublishOptions { IdempotencyKey = "k" });
        var again = await _client.PublishAsync(topic, "once"u8.ToArray(), new MiniQueuePublishOptions { IdempotencyKey = "k" });

        using (Assert.EnterMultipleScope())
        {
            Assert.That((first.IsDuplicate, again.IsDuplicate), Is.EqualTo((false, true)));
            Assert.That(Engine.GetStats(topic), Is.EqualTo(new TopicStats(1, 0, 1, 0)), "the delay was rounded up to 2 s: still delayed");
        }

        _clock.Advance(TimeSpan.FromSeconds(2));
        Assert.That(Engine.GetStats(topic).Ready, Is.EqualTo(2));

        await Engine.PublishAsync(topic + ".dead", "dead 1");
        await Engine.PublishAsync(topic + ".dead", "dead 2");
        Assert.That(await _client.RedriveAsync(topic), Is.EqualTo(2));
        Assert.That(await _client.RedriveAsync(topic), Is.Zero);
        Assert.That(Engine.GetStats(topic).Ready, Is.EqualTo(4));
    }

    [Test]
    public async Task PublishSubscribeAck_RoundTrip()
    {
        var topic = NewTopic();
        await _client.PublishAsync(topic, "one"u8.ToArray());
        await _client.PublishAsync(topic, "two"u8.ToArray());

        await using var subscription = await _client.SubscribeAsync(topic);
        var first = await ReceiveAsync(subscription);
        await subscription.AckAsync();
        var second = await ReceiveAsync(subscription);

        using (Assert.EnterMultipleScope())
        {
            Assert.That((Text(first), first.DackCount), Is.EqualTo(("one", 0)));
            Assert.That(Text(second), Is.EqualTo("two"));
            Assert.That(subscription.IsHoldingMessage, Is.True);
            Assert.That(Engine.GetStats(topic), Is.EqualTo(new TopicStats(Ready: 0, Held: 1, Delayed: 0, Consumers: 1)));
        }
    }

    [Test]
    public async Task BinaryAndEmptyMessages_RoundTripExactly()
    {
        var topic = NewTopic();
        var binary = Enumerable.Range(0, 256).Select(static i => (byte)i).ToArray();
        await _client.PublishAsync(topic, binary);
        await _client.PublishAsync(topic, ReadOnlyMemory<byte>.Empty);

        await using var subscription = await _client.SubscribeAsync(topic);
        Assert.That((await ReceiveAsync(subscription)).Body.ToArray(), Is.EqualTo(binary));
        await subscription.AckAsync();
        Assert.That((await ReceiveAsync(subscription)).Body.Length, Is.Zero);
    }

    [Test]
    public async Task NackAndBack_ReturnTheMessage_ToTheFrontAndTheBack()
    {
        var topic = NewTopic();
        await _client.PublishAsync(topic, "m1"u8.ToArray());
        await _client.PublishAsync(topic, "m2"u8.ToArray());
        await using var subscription = await _client.SubscribeAsync(topic);

        Assert.That(Text(await ReceiveAsync(subscription)), Is.EqualTo("m1"));
        await subscription.NackAsync();
        Assert.That(Text(await ReceiveAsync(subscription)), Is.EqualTo("m1"));
        await subscription.BackAsync();
        Assert.That(Text(await ReceiveAsync(subscription)), Is.EqualTo("m2"));
        await subscription.AckAsync();
        Assert.That(Text(await ReceiveAsync(subscription)), Is.EqualTo("m1"));
    }

    [Test]
    public async Task Dack_RoundsUpToWholeSeconds_AndCountsTheDelay()
    {
        var topic = NewTopic();
        await _client.PublishAsync(topic, "later"u8.ToArray());
        await using var subscription = await _client.SubscribeAsync(topic);
        await ReceiveAsync(subscription);

        await subscription.DackAsync(TimeSpan.FromSeconds(1.2));
        await WaitForAsync(() => Engine.GetStats(topic).Delayed == 1);
        _clock.Advance(TimeSpan.FromSeconds(1.5));
        Assert.That(Engine.GetStats(topic).Delayed, Is.EqualTo(1), "1.2 s is sent as 2 s");
        _clock.Advance(TimeSpan.FromSeconds(0.5));
        var again = await ReceiveAsync(subscription);

        Assert.That((Text(again), again.DackCount), Is.EqualTo(("later", 1)));
    }

    [TestCase(0, 0)]
    [TestCase(-5_000, 0)]
    [TestCase(1, 1)]
    [TestCase(1_000, 1)]
    [TestCase(1_001, 2)]
    [TestCase(59_999, 60)]
    public void DackDelay_IsRoundedUpToWholeSeconds(int milliseconds, int seconds)
    {
        Assert.That(MiniQueueSubscription.ToWholeSeconds(TimeSpan.FromMilliseconds(milliseconds)), Is.EqualTo(seconds));
    }

    [Test]
    public void DackDelay_BeyondTheProtocolsRange_IsClamped()
    {
        Assert.That(MiniQueueSubscription.ToWholeSeconds(TimeSpan.MaxValue), Is.EqualTo(int.MaxValue));
    }

    [Test]
    public async Task DisposingASubscription_ReturnsItsHeldMessage()
    {
        var topic = NewTopic();
        await _client.PublishAsync(topic, "held"u8.ToArray());
        var subscription = await _client.SubscribeAsync(topic);
        await ReceiveAsync(subscription);

        await subscription.DisposeAsync();

        Assert.That(await TakeInProcessAsync(topic), Is.EqualTo("held"));
        await WaitForAsync(() => Engine.GetStats(topic).Consumers == 0);
        Assert.That(() => subscription.ReceiveAsync().AsTask(), Throws.TypeOf<ObjectDisposedException>());
    }

    [Test]
    public async Task CancellingAReceive_LosesNothing_AndTheSubscriptionGoesOn()
    {
        var topic = NewTopic();
        await using var subscription = await _client.SubscribeAsync(topic);
        using (var shortWait = new CancellationTokenSource(TimeSpan.FromMilliseconds(50)))
        {
            Assert.That(() => subscription.ReceiveAsync(shortWait.Token).AsTask(), Throws.InstanceOf<OperationCanceledException>());
        }

        await _client.PublishAsync(topic, "after"u8.ToArray());

        Assert.That(Text(await ReceiveAsync(subscription)), Is.EqualTo("after"));
    }

    [Test]
    public async Task ACancellationThatLandsWhileTheRequestForAMessageIsBeingSent_LeavesTheStreamUsable()
    {
        // Cancelling an HTTP/2 write resets the stream; the client must not hand the caller's token to its writes.
        for (var i = 0; i < 30; i++)
        {
            var topic = NewTopic();
            await using var subscription = await _client.SubscribeAsync(topic);
            using (var cancel = new CancellationTokenSource())
            {
                var receiving = subscription.ReceiveAsync(cancel.Token).AsTask();
                await cancel.CancelAsync();
                Assert.That(() => receiving, Throws.InstanceOf<OperationCanceledException>());
            }

            await _client.PublishAsync(topic, "after"u8.ToArray());
            Assert.That(Text(await ReceiveAsync(subscription)), Is.EqualTo("after"), $"round {i}");
            await subscription.AckAsync();
        }
    }

    [Test]
    public async Task AnAckJustBeforeTheSubscriptionIsDisposed_IsApplied()
    {
        // Disposing used to reset the stream at once, and the reset often overtook the ACK: the message came back.
        for (var i = 0; i < 10; i++)
        {
            var topic = NewTopic();
            await _client.PublishAsync(topic, "done"u8.ToArray());
            await using (var subscription = await _client.SubscribeAsync(topic))
            {
                await ReceiveAsync(subscription);
                await subscription.AckAsync();
            }

            Assert.That(() => Engine.GetStats(topic), Is.EqualTo(new TopicStats(0, 0, 0, 0)).After(2000, 20), $"round {i}: acknowledged, not returned");
        }
    }

    [Test]
    public async Task DisposingWhileHolding_ReturnsTheMessageToTheFront_AtOnce()
    {
        var topic = NewTopic();
        await _client.PublishAsync(topic, "held"u8.ToArray());
        var subscription = await _client.SubscribeAsync(topic);
        await ReceiveAsync(subscription);

        await subscription.DisposeAsync().AsTask().WaitAsync(TestSupport.Bound);

        Assert.That(() => Engine.GetStats(topic), Is.EqualTo(new TopicStats(1, 0, 0, 0)).After(2000, 20));
    }

    [Test]
    public async Task SettlingWithoutAMessage_OrReceivingWhileHolding_IsRefusedLocally()
    {
        var topic = NewTopic();
        await _client.PublishAsync(topic, "m"u8.ToArray());
        await using var subscription = await _client.SubscribeAsync(topic);

        Assert.That(() => subscription.AckAsync().AsTask(), Throws.InvalidOperationException);
        Assert.That(() => subscription.DackAsync(TimeSpan.FromSeconds(1)).AsTask(), Throws.InvalidOperationException);
        await ReceiveAsync(subscription);
        Assert.That(() => subscription.ReceiveAsync().AsTask(), Throws.InvalidOperationException);
        await subscription.AckAsync();
        Assert.That(Engine.GetStats(topic).Ready, Is.Zero);
    }

    [Test]
    public void ServerErrors_SurfaceAsMiniQueueClientException_WithTheServersText()
    {
        var invalid = Assert.ThrowsAsync<MiniQueueClientException>(() => _client.PublishAsync("a/b", "x"u8.ToArray()));
        var tooLarge = Assert.ThrowsAsync<MiniQueueClientException>(() =>
            _client.PublishAsync(NewTopic(), new byte[MiniQueueOptions.DefaultMaxMessageBytes + 1]));
        var subscribe = Assert.ThrowsAsync<MiniQueueClientException>(() => _client.SubscribeAsync("bad\u0001name"));
        var purge = Assert.ThrowsAsync<MiniQueueClientException>(() => _client.PurgeAsync(""));

        using (Assert.EnterMultipleScope())
        {
            Assert.That((invalid!.StatusCode, invalid.ServerError), Is.EqualTo((HttpStatusCode.BadRequest, "invalid topic value")));
            Assert.That((tooLarge!.StatusCode, tooLarge.ServerError), Is.EqualTo((HttpStatusCode.RequestEntityTooLarge, "message too large")));
            Assert.That((subscribe!.StatusCode, subscribe.ServerError), Is.EqualTo((HttpStatusCode.BadRequest, "invalid topic value")));
            Assert.That(purge!.StatusCode, Is.Not.Null.And.Not.EqualTo(HttpStatusCode.OK));
            Assert.That(invalid.Message, Does.Contain("invalid topic value"));
        }
    }

    [TestCase("a b")]
    [TestCase("dé\U0001F600")]
    [TestCase("100%")]
    [TestCase("?#&=+")]
    [TestCase("..x")]
    [TestCase("a-ack")]
    public async Task AnyValidTopicName_RoundTrips(string name)
    {
        var topic = name + "-" + Guid.NewGuid().ToString("N")[..8];
        foreach (var candidate in new[] { name, topic })
        {
            await _client.PurgeAsync(candidate);
            await _client.PublishAsync(candidate, Encoding.UTF8.GetBytes(candidate));
            Assert.That(Engine.GetStats(candidate).Ready, Is.EqualTo(1), candidate);

            await using var subscription = await _client.SubscribeAsync(candidate);
            Assert.That(Text(await ReceiveAsync(subscription)), Is.EqualTo(candidate));
            await subscription.AckAsync();
        }
    }

    [TestCase(".")]
    [TestCase("..")]
    public void TopicsAUrlPathCannotCarry_AreRefusedWithAClearError(string topic)
    {
        // Valid names for the engine, but Kestrel (like any server) removes them from a path as dot segments,
        // even when escaped as %2E.
        Assert.That(() => _client.PublishAsync(topic, "x"u8.ToArray()), Throws.ArgumentException.With.Message.Contains("dot segment"));
    }

    [Test]
    public async Task Purge_DiscardsReadyMessages()
    {
        var topic = NewTopic();
        await _client.PublishAsync(topic, "x"u8.ToArray());

        await _client.PurgeAsync(topic);

        Assert.That(Engine.GetStats(topic).Ready, Is.Zero);
    }

    [Test]
    public async Task ManyConnections_CarryConcurrentPublishes()
    {
        var topic = NewTopic();
        using var client = _host.CreateClient("mq", connections: 3);

        await Task.WhenAll(Enumerable.Range(0, 300).Select(i => client.PublishAsync(topic, Encoding.UTF8.GetBytes($"m{i}"))));

        Assert.That(Engine.GetStats(topic).Ready, Is.EqualTo(300));
    }

    [Test]
    public async Task ManySubscriptions_ShareTheWork()
    {
        var topic = NewTopic();
        using var client = _host.CreateClient("mq", connections: 2);
        var subscriptions = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => client.SubscribeAsync(topic)));
        try
        {
            var receives = subscriptions.Select(static subscription => ReceiveAsync(subscription)).ToArray();
            for (var i = 0; i < subscriptions.Length; i++)
            {
                await client.PublishAsync(topic, Encoding.UTF8.GetBytes($"m{i}"));
            }

            var texts = (await Task.WhenAll(receives)).Select(Text);
            Assert.That(texts, Is.EquivalentTo(Enumerable.Range(0, subscriptions.Length).Select(static i => $"m{i}")));
        }
        finally
        {
            foreach (var subscription in subscriptions)
            {
                await subscription.DisposeAsync();
            }
        }
    }

    [Test]
    public async Task AStreamTheServerEnds_SurfacesAsMiniQueueClientException_AndLosesNothing()
    {
        await using var host = await MiniQueueTestHost.StartAsync();
        using var client = host.CreateClient();
        await client.PublishAsync("t", "held"u8.ToArray());
        await using var subscription = await client.SubscribeAsync("t");
        await ReceiveAsync(subscription);
        await subscription.AckAsync();

        await host.StopAsync();

        Assert.That(() => ReceiveAsync(subscription), Throws.TypeOf<MiniQueueClientException>());
        Assert.That(() => subscription.ReceiveAsync().AsTask(), Throws.TypeOf<MiniQueueClientException>().With.Message.Contains("subscribe again"));
    }

    [Test]
    public void Options_AreValidated()
    {
        Assert.That(() => new MiniQueueClient(new MiniQueueClientOptions()), Throws.ArgumentException.With.Message.Contains("BaseAddress"));
        Assert.That(() => new MiniQueueClient(new MiniQueueClientOptions { BaseAddress = new Uri("https://x"), Connections = 0 }),
            Throws.ArgumentException.With.Message.Contains("Connections"));
    }

    [Test]
    public async Task ACustomHandler_IsUsedForEveryConnection()
    {
        var created = 0;
        using var client = new MiniQueueClient(new MiniQueueClientOptions
        {
            BaseAddress = new Uri(_host.BaseAddress, "mq/"),
            Connections = 2,
            CreateHandler = () =>
            {
                Interlocked.Increment(ref created);
                return MiniQueueTestHost.CreateHandler();
            },
        });

        await client.PublishAsync(NewTopic(), "x"u8.ToArray());

        Assert.That(created, Is.EqualTo(2));
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
