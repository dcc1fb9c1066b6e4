using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Infrastructure;
using MiniQueue.Http;

namespace Shop;

/// <summary>
/// The shop's per-topic rule for the /mq routes (MiniQueue:Http:AuthorizeTopics is on in appsettings.json): callers in the
/// "queue" role may publish, consume, purge and redrive any topic, except that nobody purges or redrives "orders",
/// the topic the shop's own worker consumes.
/// </summary>
public sealed class QueueRules : AuthorizationHandler<OperationAuthorizationRequirement, MiniQueueTopic>
{
    protected override Task HandleRequirementAsync(
        AuthorizationHandlerContext context, OperationAuthorizationRequirement operation, MiniQueueTopic topic)
    {
        var destructive = operation == MiniQueueOperations.Purge || operation == MiniQueueOperations.Redrive;
        if (context.User.IsInRole("queue") && !(destructive && topic.Name == "orders"))
        {
            context.Succeed(operation);
        }

        return Task.CompletedTask;
    }
}
