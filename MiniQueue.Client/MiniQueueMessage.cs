namespace MiniQueue.Client;

/// <summary>A message a subscription received and holds until it settles it.</summary>
/// <param name="Body">The message's bytes, exactly as published.</param>
/// <param name="DackCount">How many times the message was delayed with DACK.</param>
public readonly record struct MiniQueueMessage(ReadOnlyMemory<byte> Body, int DackCount);
