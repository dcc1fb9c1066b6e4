namespace MiniQueue;

/// <summary>A message handed to a <see cref="MiniQueueConsumer"/>, which holds it until it settles it.</summary>
/// <param name="Payload">The message's bytes, exactly as published.</param>
/// <param name="DackCount">How many times the message has been delayed with DACK.</param>
/// <param name="MessageId">The engine's id of the message, unique within the engine's data.</param>
public readonly record struct Delivery(ReadOnlyMemory<byte> Payload, int DackCount, long MessageId)
{
    /// <summary>
    /// Cancelled when the lease on this delivery passes (see <see cref="MiniQueueOptions.Lease"/>): the message is back
    /// at the front of its topic and the consumer holds nothing. <see cref="CancellationToken.None"/> on a topic
    /// without a lease.
    /// </summary>
    public CancellationToken LeaseExpired { get; init; }
}
