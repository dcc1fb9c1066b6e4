namespace MiniQueue.Backend;

/// <summary>
/// The seam between the engine's public API (<see cref="MiniQueueEngine"/>, <see cref="MiniQueueConsumer"/>) and what
/// keeps the queue's state: publish, take with a lease, settle, purge, redrive, stats, waiting for a message, topics.
/// Every rule of docs/PROTOCOL.md is the backend's to keep. <see cref="Engine.LocalBackend"/> keeps the state in this process
/// (in memory, or durable in a FasterLog); a backend whose state lives elsewhere (a shared database) plugs in here too.
/// </summary>
/// <remarks>The public classes document the contract of each member; implementations follow it exactly.</remarks>
internal interface IQueueBackend : IAsyncDisposable
{
    int MaxMessageBytes { get; }

    bool IsWritable { get; }

    bool IsDiskLow { get; }

    ValueTask PublishAsync(string topic, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken);

    ValueTask<PublishResult> PublishAsync(string topic, ReadOnlyMemory<byte> payload, PublishOptions? options, CancellationToken cancellationToken);

    IQueueConsumer Subscribe(string topic);

    ValueTask<int> PurgeAsync(string topic, CancellationToken cancellationToken);

    ValueTask<int> RedriveAsync(string topic, CancellationToken cancellationToken);

    TopicStats GetStats(string topic);

    IReadOnlyList<string> GetTopics();
}

/// <summary>A backend's consumer of one topic, behind <see cref="MiniQueueConsumer"/>.</summary>
internal interface IQueueConsumer : IAsyncDisposable
{
    string Topic { get; }

    bool IsHoldingMessage { get; }

    ValueTask<Delivery> ReceiveAsync(CancellationToken cancellationToken);

    bool TryReceive(out Delivery delivery);

    ValueTask AckAsync(CancellationToken cancellationToken);

    ValueTask NackAsync(CancellationToken cancellationToken);

    ValueTask BackAsync(CancellationToken cancellationToken);

    ValueTask DackAsync(TimeSpan delay, CancellationToken cancellationToken);

    ValueTask TouchAsync(CancellationToken cancellationToken);
}
