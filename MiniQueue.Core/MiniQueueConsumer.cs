using MiniQueue.Backend;
using MiniQueue.Engine;

namespace MiniQueue;

/// <summary>
/// A consumer of one topic. It holds at most one message at a time: <see cref="ReceiveAsync"/> hands it the next
/// message, and <see cref="AckAsync"/>, <see cref="NackAsync"/>, <see cref="BackAsync"/> or <see cref="DackAsync"/>
/// settles it. The consumers of a topic compete: each message goes to one of them.
/// </summary>
/// <remarks>
/// A consumer is meant for one caller at a time; only <see cref="DisposeAsync"/> may be called while a
/// <see cref="ReceiveAsync"/> is waiting. Disposing returns the held message to the front of the topic.
/// </remarks>
public sealed class MiniQueueConsumer : IAsyncDisposable
{
    private readonly IQueueConsumer _consumer;

    internal MiniQueueConsumer(IQueueConsumer consumer) => _consumer = consumer;

    /// <summary>The topic this consumer consumes.</summary>
    public string Topic => _consumer.Topic;

    /// <summary>Whether the consumer holds a message it has not settled yet.</summary>
    public bool IsHoldingMessage => _consumer.IsHoldingMessage;

    /// <summary>
    /// Waits for the next message of the topic and holds it. A topic that does not exist yet is waited for.
    /// </summary>
    /// <exception cref="InvalidOperationException">The consumer already holds a message, or another receive is waiting.</exception>
    /// <exception cref="ObjectDisposedException">The consumer or its engine was disposed, also while waiting.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled before a message came.</exception>
    /// <exception cref="MiniQueueStoreException">The message's body could not be read back; the consumer holds it, so dispose or settle it.</exception>
    public ValueTask<Delivery> ReceiveAsync(CancellationToken cancellationToken = default) => _consumer.ReceiveAsync(cancellationToken);

    /// <summary>Holds the next message if one is ready now, without waiting, not even for a disk read.</summary>
    /// <returns>
    /// Whether a message was ready (and the store had room to log its delivery). A durable engine keeps the bodies of
    /// long queues on disk only: when the next message's body must be read, this holds nothing and returns false, and
    /// the read starts, so that a later call finds the body at hand (<see cref="ReceiveAsync"/> waits for it instead).
    /// </returns>
    public bool TryReceive(out Delivery delivery) => _consumer.TryReceive(out delivery);

    /// <summary>Done: removes the held message for good.</summary>
    /// <exception cref="InvalidOperationException">The consumer holds no message.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while the store had no room to log the ACK; the message is still held.</exception>
    public ValueTask AckAsync(CancellationToken cancellationToken = default) => _consumer.AckAsync(cancellationToken);

    /// <summary>Returns the held message to the front of the topic; a consumer already waiting gets it at once.</summary>
    /// <exception cref="InvalidOperationException">The consumer holds no message.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while the store had no room; the message is still held.</exception>
    public ValueTask NackAsync(CancellationToken cancellationToken = default) => _consumer.NackAsync(cancellationToken);

    /// <summary>Returns the held message to the back of the topic.</summary>
    /// <exception cref="InvalidOperationException">The consumer holds no message.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while the store had no room; the message is still held.</exception>
    public ValueTask BackAsync(CancellationToken cancellationToken = default) => _consumer.BackAsync(cancellationToken);

    /// <summary>
    /// Delays the held message by <paramref name="delay"/> and counts the delay in its dackCount. When it comes due it
    /// returns ahead of the FIFO messages (after NACKed ones). A delay of zero or less makes it due at once.
    /// </summary>
    /// <exception cref="InvalidOperationException">The consumer holds no message.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while the store had no room; the message is still held.</exception>
    public ValueTask DackAsync(TimeSpan delay, CancellationToken cancellationToken = default) => _consumer.DackAsync(delay, cancellationToken);

    /// <summary>
    /// TOUCH: renews the lease on the held message, so that it stays held for another full lease from now (see
    /// <see cref="MiniQueueOptions.Lease"/>). On a topic without a lease it only checks that a message is held.
    /// </summary>
    /// <exception cref="InvalidOperationException">The consumer holds no message (or its lease passed already).</exception>
    /// <exception cref="ObjectDisposedException">The consumer was disposed.</exception>
    public ValueTask TouchAsync(CancellationToken cancellationToken = default) => _consumer.TouchAsync(cancellationToken);

    /// <summary>
    /// Ends the consumer: a waiting <see cref="ReceiveAsync"/> fails with <see cref="ObjectDisposedException"/> and the
    /// held message returns to the front of the topic.
    /// </summary>
    public ValueTask DisposeAsync() => _consumer.DisposeAsync();
}
