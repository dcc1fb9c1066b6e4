using System.Text;
using Microsoft.Extensions.Time.Testing;

namespace MiniQueue.Tests;

internal static class TestSupport
{
    /// <summary>The bound on every wait in the tests: long enough for a loaded CI machine, short enough to fail.</summary>
    public static readonly TimeSpan Bound = TimeSpan.FromSeconds(20);

    public static FakeTimeProvider NewClock() => new(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));

    public static ValueTask<MiniQueueEngine> OpenInMemoryAsync(TimeProvider? time = null) =>
        MiniQueueEngine.OpenAsync(new MiniQueueOptions { TimeProvider = time ?? NewClock() });

    public static byte[] Bytes(string text) => Encoding.UTF8.GetBytes(text);

    public static string Text(this Delivery delivery) => Encoding.UTF8.GetString(delivery.Payload.Span);

    public static ValueTask PublishAsync(this MiniQueueEngine queue, string topic, string text) => queue.PublishAsync(topic, Bytes(text), CancellationToken.None);

    /// <summary>Receives with a bounded wait and returns the text.</summary>
    public static async Task<string> ReceiveTextAsync(this MiniQueueConsumer consumer)
    {
        using var timeout = new CancellationTokenSource(Bound);
        return (await consumer.ReceiveAsync(timeout.Token)).Text();
    }

    /// <summary>Awaits a task that must complete, within the bound.</summary>
    public static async Task<T> Within<T>(this ValueTask<T> task) => await task.AsTask().WaitAsync(Bound);

    public static async Task Within(this ValueTask task) => await task.AsTask().WaitAsync(Bound);

    /// <summary>Whether a task is still pending after the continuations queued so far have had a chance to run.</summary>
    public static async Task<bool> StaysPendingAsync(Task task)
    {
        await Task.Delay(50);
        return !task.IsCompleted;
    }
}
