using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Serialization;
using MiniQueue;

namespace Shop;

public sealed record Order(string Item, int Quantity)
{
    [JsonIgnore]
    public bool IsValid => !string.IsNullOrWhiteSpace(Item) && Quantity > 0;
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(Order))]
internal sealed partial class ShopJson : JsonSerializerContext;

/// <summary>The orders the worker has handled, newest last.</summary>
public sealed class ProcessedOrders
{
    private readonly ConcurrentQueue<Order> _orders = new();

    public IReadOnlyCollection<Order> All => [.. _orders];

    public void Add(Order order) => _orders.Enqueue(order);
}

/// <summary>
/// Consumes the "orders" topic in process: each order is handled and ACKed. Whoever publishes — the shop's own
/// <c>POST /orders</c>, or another service through <c>/mq/publish/orders</c> — the worker sees it.
/// </summary>
public sealed partial class OrderWorker(MiniQueueEngine queue, ProcessedOrders processed, ILogger<OrderWorker> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await using var consumer = queue.Subscribe("orders");
        while (true)
        {
            Delivery delivery;
            try
            {
                delivery = await consumer.ReceiveAsync(stoppingToken);
            }
            catch (Exception exception) when (exception is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }

            Order? order = null;
            try
            {
                order = JsonSerializer.Deserialize(delivery.Payload.Span, ShopJson.Default.Order);
            }
            catch (JsonException)
            {
            }

            if (order is not { IsValid: true })
            {
                // A message that can never be handled is dropped, not retried for ever.
                LogUnreadable(delivery.MessageId);
                await consumer.AckAsync(CancellationToken.None);
                continue;
            }

            processed.Add(order);
            LogProcessed(order.Quantity, order.Item);
            await consumer.AckAsync(CancellationToken.None);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dropped message {MessageId}: it is not a valid order")]
    private partial void LogUnreadable(long messageId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Processed an order of {Quantity} x {Item}")]
    private partial void LogProcessed(int quantity, string item);
}
