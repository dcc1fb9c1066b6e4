using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Moq;

namespace MiniQueue.Tests.Samples;

// ---------------------------------------------------------------------------------------------------------------
// The application's own code, as it would be in someone's app: a checkout that publishes invoices, and a mailer that
// consumes them. docs/embedding.md, "MiniQueue in your unit tests", shows this pattern.
// ---------------------------------------------------------------------------------------------------------------

public sealed record Invoice(string Customer, decimal Amount);

public interface IMailSender
{
    Task SendAsync(string recipient, string body, CancellationToken cancellationToken);
}

public sealed class MailServerDownException : Exception
{
    public MailServerDownException()
    {
    }

    public MailServerDownException(string message)
        : base(message)
    {
    }

    public MailServerDownException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>Publishes an invoice for each order it checks out.</summary>
public sealed class Checkout(MiniQueueEngine queue)
{
    public ValueTask CheckOutAsync(string customer, decimal amount, CancellationToken cancellationToken = default) =>
        queue.PublishAsync("invoices", JsonSerializer.SerializeToUtf8Bytes(new Invoice(customer, amount)), cancellationToken);
}

/// <summary>What the mailer did with a message.</summary>
public enum MailOutcome
{
    Sent,
    RetryLater,
    GaveBack,
    DeadLettered,
}

/// <summary>
/// Mails one invoice at a time. Sent: ACK. A timeout: DACK for 2^dackCount seconds, up to five attempts, then the
/// message goes to "invoices.dead". The mail server down: NACK, so that another mailer takes it at once. A message that
/// is not an invoice: dead-lettered at once.
/// </summary>
public sealed class InvoiceMailer(MiniQueueConsumer consumer, MiniQueueEngine queue, IMailSender mail)
{
    public const int MaxAttempts = 5;

    public async Task<MailOutcome> HandleNextAsync(CancellationToken cancellationToken)
    {
        var delivery = await consumer.ReceiveAsync(cancellationToken);
        Invoice? invoice;
        try
        {
            invoice = JsonSerializer.Deserialize<Invoice>(delivery.Payload.Span);
        }
        catch (JsonException)
        {
            invoice = null;
        }

        if (invoice is null)
        {
            return await DeadLetterAsync(delivery);
        }

        try
        {
            await mail.SendAsync(invoice.Customer, $"You owe {invoice.Amount}", cancellationToken);
        }
        catch (TimeoutException) when (delivery.DackCount + 1 < MaxAttempts)
        {
            await consumer.DackAsync(TimeSpan.FromSeconds(Math.Pow(2, delivery.DackCount)), CancellationToken.None);
            return MailOutcome.RetryLater;
        }
        catch (TimeoutException)
        {
            return await DeadLetterAsync(delivery);
        }
        catch (MailServerDownException)
        {
            await consumer.NackAsync(CancellationToken.None);
            return MailOutcome.GaveBack;
        }

        // The mail went out: the ACK is made even if the caller is stopping.
        await consumer.AckAsync(CancellationToken.None);
        return MailOutcome.Sent;
    }

    private async Task<MailOutcome> DeadLetterAsync(Delivery delivery)
    {
        await queue.PublishAsync("invoices.dead", delivery.Payload);
        await consumer.AckAsync();
        return MailOutcome.DeadLettered;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The tests: an in-memory MiniQueue with a fake clock, no ports and no sleeps.
// ---------------------------------------------------------------------------------------------------------------

[CancelAfter(10_000)]
public sealed class UnitTestPatternTests
{
    private FakeTimeProvider _clock = null!;
    private MiniQueueEngine _queue = null!;
    private MiniQueueConsumer _consumer = null!;
    private Mock<IMailSender> _mail = null!;
    private InvoiceMailer _mailer = null!;

    [SetUp]
    public async Task OpenQueue()
    {
        _clock = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 9, 0, 0, TimeSpan.Zero));
        _queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { TimeProvider = _clock });
        _consumer = _queue.Subscribe("invoices");
        _mail = new Mock<IMailSender>();
        _mailer = new InvoiceMailer(_consumer, _queue, _mail.Object);
    }

    [TearDown]
    public async Task CloseQueue()
    {
        await _consumer.DisposeAsync();
        await _queue.DisposeAsync();
    }

    /// <summary>Everything left in a topic, drained without waiting: (body, dackCount) in delivery order.</summary>
    private async Task<List<(string Body, int DackCount)>> DrainAsync(string topic)
    {
        var drained = new List<(string, int)>();
        await using var reader = _queue.Subscribe(topic);
        while (reader.TryReceive(out var delivery))
        {
            drained.Add((Encoding.UTF8.GetString(delivery.Payload.Span), delivery.DackCount));
            await reader.AckAsync();
        }

        return drained;
    }

    [Test]
    public async Task ASentInvoice_IsAcked_AndTheTopicIsEmpty()
    {
        await new Checkout(_queue).CheckOutAsync("ada@example.com", 12.50m);

        Assert.That(await _mailer.HandleNextAsync(default), Is.EqualTo(MailOutcome.Sent));

        _mail.Verify(mail => mail.SendAsync("ada@example.com", "You owe 12.50", It.IsAny<CancellationToken>()), Times.Once);
        Assert.That(_queue.GetStats("invoices"), Is.EqualTo(new TopicStats(Ready: 0, Held: 0, Delayed: 0, Consumers: 1)));
    }

    [Test]
    public async Task ATimeout_IsRetriedWithExponentialBackoff_ByTheFakeClock_ThenDeadLettered()
    {
        _mail.Setup(mail => mail.SendAsync(It.IsAny<string>(), It.IsAny<string>(), It.IsAny<CancellationToken>())).ThrowsAsync(new TimeoutException());
        await new Checkout(_queue).CheckOutAsync("bob@example.com", 3m);

        for (var attempt = 0; attempt < InvoiceMailer.MaxAttempts - 1; attempt++)
        {
            Assert.That(await _mailer.HandleNextAsync(default), Is.EqualTo(MailOutcome.RetryLater));
            Assert.That(_queue.GetStats("invoices").Delayed, Is.EqualTo(1));

            // One tick short of 2^attempt seconds it is still delayed; at the due time it is ready, counted.
            _clock.Advance(TimeSpan.FromSeconds(Math.Pow(2, attempt)) - TimeSpan.FromTicks(1));
            Assert.That(_consumer.TryReceive(out _), Is.False, $"attempt {attempt}: not due yet");
            _clock.Advance(TimeSpan.FromTicks(1));
            Assert.That(_queue.GetStats("invoices"), Is.EqualTo(new TopicStats(Ready: 1, Held: 0, Delayed: 0, Consumers: 1)));
        }

        Assert.That(await _mailer.HandleNextAsync(default), Is.EqualTo(MailOutcome.DeadLettered));
        _mail.Verify(mail => mail.SendAsync(It.IsAny<string>(), It.IsAny<string>(), It.IsAny<CancellationToken>()), Times.Exactly(InvoiceMailer.MaxAttempts));
        Assert.That(await DrainAsync("invoices"), Is.Empty);
        Assert.That(await DrainAsync("invoices.dead"), Is.EqualTo(new[] { ("""{"Customer":"bob@example.com","Amount":3}""", 0) }));
    }

    [Test]
    public async Task TheMailServerDown_GivesTheInvoiceBackToTheFront_ForTheNextMailer()
    {
        _mail.SetupSequence(mail => mail.SendAsync(It.IsAny<string>(), It.IsAny<string>(), It.IsAny<CancellationToken>()))
            .ThrowsAsync(new MailServerDownException())
            .Returns(Task.CompletedTask);
        var checkout = new Checkout(_queue);
        await checkout.CheckOutAsync("first@example.com", 1m);
        await checkout.CheckOutAsync("second@example.com", 2m);

        Assert.That(await _mailer.HandleNextAsync(default), Is.EqualTo(MailOutcome.GaveBack));

        // NACKed to the front: the same invoice comes next, ahead of the second, and it was not counted as a delay.
        Assert.That(_consumer.TryReceive(out var next), Is.True);
        Assert.That((Encoding.UTF8.GetString(next.Payload.Span), next.DackCount), Is.EqualTo(("""{"Customer":"first@example.com","Amount":1}""", 0)));
        await _consumer.NackAsync();
        Assert.That(await _mailer.HandleNextAsync(default), Is.EqualTo(MailOutcome.Sent));
        Assert.That(await DrainAsync("invoices"), Has.Count.EqualTo(1).And.Exactly(1).Matches<(string Body, int DackCount)>(m => m.Body.Contains("second", StringComparison.Ordinal)));
    }

    [Test]
    public async Task SomethingThatIsNotAnInvoice_IsDeadLetteredAtOnce_WithoutMailing()
    {
        await _queue.PublishAsync("invoices", Encoding.UTF8.GetBytes("not json"));

        Assert.That(await _mailer.HandleNextAsync(default), Is.EqualTo(MailOutcome.DeadLettered));

        _mail.VerifyNoOtherCalls();
        Assert.That(await DrainAsync("invoices.dead"), Is.EqualTo(new[] { ("not json", 0) }));
    }
}
