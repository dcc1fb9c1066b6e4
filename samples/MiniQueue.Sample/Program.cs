// A shop's web app that existed before MiniQueue: its own endpoints, its own API-key authentication. It embeds
// MiniQueue from the NuGet packages: the engine in process (an order worker consumes the "orders" topic) and the
// miniqueue HTTP/2 protocol under /mq for other services, behind the shop's authorization. Run as several replicas,
// it keeps one queue in PostgreSQL (shared mode, below).
using System.Text.Json;
using Microsoft.AspNetCore.Authorization;
using MiniQueue;
using Shop;

var builder = WebApplication.CreateBuilder(args);

// The shop's own authentication and authorization.
builder.Services.AddAuthentication(ApiKeyAuthentication.SchemeName)
    .AddScheme<ApiKeyAuthenticationOptions, ApiKeyAuthentication>(
        ApiKeyAuthentication.SchemeName, options => builder.Configuration.GetSection("ApiKeys").Bind(options));
builder.Services.AddAuthorizationBuilder()
    .AddPolicy("queue", policy => policy.RequireRole("queue"));

// And per topic, for the /mq routes (MiniQueue:Http:AuthorizeTopics in appsettings.json): see QueueRules.
builder.Services.AddSingleton<IAuthorizationHandler, QueueRules>();

// MiniQueue, with its options bound from the "MiniQueue" section of appsettings.json. Added before the worker, so that
// at shutdown the worker stops first and the engine then commits and closes.
builder.Services.AddMiniQueue();

// Shared mode: given a PostgreSQL connection string at MiniQueue:PostgreSql (in appsettings.json, or the environment
// variable MiniQueue__PostgreSql), the queue lives in that database, and every replica of the shop serves the same one.
if (builder.Configuration[MiniQueuePostgreSqlServiceCollectionExtensions.ConnectionStringKey] is not null)
{
    builder.Services.AddMiniQueuePostgreSql();
}

builder.Services.AddSingleton<ProcessedOrders>();
builder.Services.AddHostedService<OrderWorker>();

var app = builder.Build();
app.UseAuthentication();
app.UseAuthorization();

// The shop's own endpoints.
app.MapGet("/", () => "The shop is open.");
app.MapPost("/orders", async (Order order, MiniQueueEngine queue, CancellationToken cancellationToken) =>
{
    if (!order.IsValid)
    {
        return Results.ValidationProblem(new Dictionary<string, string[]> { ["order"] = ["An order needs an item and a positive quantity."] });
    }

    // In process: the same engine the /mq routes serve, no HTTP round trip.
    await queue.PublishAsync("orders", JsonSerializer.SerializeToUtf8Bytes(order, ShopJson.Default.Order), cancellationToken);
    return Results.Accepted();
}).RequireAuthorization();
app.MapGet("/orders/processed", (ProcessedOrders processed) => processed.All).RequireAuthorization();

// The miniqueue protocol (publish, subscribe, purge) for other services, only for callers in the "queue" role, and per
// topic as QueueRules says.
app.MapMiniQueue("/mq").RequireAuthorization("queue");

app.Run();
