namespace MiniQueue;

/// <summary>A message handed to a <see cref="MiniQueueConsumer"/>, which holds it until it settles it.</summary>
/// <param name="Payload">The message's bytes, exactly as published.</param>
/// <param name="DackCount">How many times the message has been delayed with DACK.</param>
/// <param name="MessageId">The engine's id of the message, unique within the engine's data.</param>
public readonly record struct Delivery(ReadOnlyMemory<byte> Payload, int DackCount, long MessageId);
