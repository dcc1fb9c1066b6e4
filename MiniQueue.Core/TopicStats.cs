namespace MiniQueue;

/// <summary>A topic's counts at one moment.</summary>
/// <param name="Ready">Messages waiting to be delivered, due delayed ones included.</param>
/// <param name="Held">Messages that consumers hold and have not settled.</param>
/// <param name="Delayed">DACKed messages that have not come due.</param>
/// <param name="Consumers">Consumers subscribed to the topic.</param>
public readonly record struct TopicStats(int Ready, int Held, int Delayed, int Consumers);
