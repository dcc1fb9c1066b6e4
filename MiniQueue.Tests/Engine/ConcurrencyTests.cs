using System.Collections.Concurrent;

namespace MiniQueue.Tests.Engine;

/// <summary>Many publishers and consumers at once: nothing is lost and nothing is delivered twice once ACKed.</summary>
[CancelAfter(60_000)]
public sealed class ConcurrencyTests
{
    [TestCase(1, 1)]
    [TestCase(8, 8)]
    [TestCase(16, 3)]
    [TestCase(2, 32)]
    public async Task ManyPublishersAndConsumers_EveryMessageIsAckedExactlyOnce(int publishers, int consumers)
    {
        const int perPublisher = 2_000;
        await using var queue = await TestSupport.OpenInMemoryAsync(TimeProvider.System);
        var acked = new ConcurrentDictionary<string, int>();
        var total = publishers * perPublisher;
        using var done = new CancellationTokenSource();

        var consumerTasks = Enumerable.Range(0, consumers).Select(c => Task.Run(async () =>
        {
            var random = new Random(c);
            await using var consumer = queue.Subscribe("load");
            while (!done.IsCancellationRequested)
            {
                Delivery delivery;
                try
                {
                    delivery = await consumer.ReceiveAsync(done.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }

                var text = delivery.Text();

                // Some settles put the message back; only ACKs count, and each message must be ACKed once.
                switch (random.Next(10))
                {
                    case 0:
                        await consumer.NackAsync();
                        break;
                    case 1:
                        await consumer.BackAsync();
                        break;
                    case 2:
                        await consumer.DackAsync(TimeSpan.Zero);
                        break;
                    default:
                        await consumer.AckAsync();
                        if (acked.AddOrUpdate(text, 1, (_, n) => n + 1) == 1 && acked.Count == total)
                        {
                            await done.CancelAsync();
                        }

                        break;
                }
            }
        })).ToArray();

        var publisherTasks = Enumerable.Range(0, publishers).Select(p => Task.Run(async () =>
        {
            for (var i = 0; i < perPublisher; i++)
            {
                await queue.PublishAsync("load", $"{p}:{i}");
            }
        })).ToArray();

        await Task.WhenAll(publisherTasks).WaitAsync(TestSupport.Bound);
        await Task.WhenAll(consumerTasks).WaitAsync(TimeSpan.FromSeconds(45));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(acked, Has.Count.EqualTo(total), "every published message was ACKed");
            Assert.That(acked.Values.Where(n => n != 1), Is.Empty, "no message was ACKed twice");
            Assert.That(queue.GetStats("load"), Is.EqualTo(new TopicStats(0, 0, 0, 0)));
        }
    }

    [Test]
    public async Task ConsumersComingAndGoing_WhileHoldingMessages_LoseNothing()
    {
        const int messages = 3_000;
        await using var queue = await TestSupport.OpenInMemoryAsync(TimeProvider.System);
        for (var i = 0; i < messages; i++)
        {
            await queue.PublishAsync("churn", i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        var acked = new ConcurrentDictionary<string, int>();
        using var done = new CancellationTokenSource();
        var workers = Enumerable.Range(0, 6).Select(w => Task.Run(async () =>
        {
            var random = new Random(w);
            while (!done.IsCancellationRequested)
            {
                // Each consumer takes a few messages, then leaves holding one, or is cancelled while waiting.
                var consumer = queue.Subscribe("churn");
                try
                {
                    for (var n = random.Next(1, 5); n > 0; n--)
                    {
                        using var wait = new CancellationTokenSource(random.Next(1, 20));
                        var delivery = await consumer.ReceiveAsync(wait.Token);
                        if (n > 1)
                        {
                            await consumer.AckAsync();
                            if (acked.AddOrUpdate(delivery.Text(), 1, (_, c) => c + 1) == 1 && acked.Count == messages)
                            {
                                await done.CancelAsync();
                            }
                        }
                    }
                }
                catch (OperationCanceledException)
                {
                }
                finally
                {
                    await consumer.DisposeAsync();
                }
            }
        })).ToArray();

        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(45));

        using (Assert.EnterMultipleScope())
        {
            Assert.That(acked, Has.Count.EqualTo(messages));
            Assert.That(acked.Values.Where(n => n != 1), Is.Empty);
            Assert.That(queue.GetStats("churn"), Is.EqualTo(new TopicStats(0, 0, 0, 0)));
        }
    }
}
