using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Infrastructure;
using MiniQueue.Http;

namespace MiniQueue.Host.Security;

/// <summary>
/// Decides the host's requests by the grants of the access file in force: a protocol operation on a
/// <see cref="MiniQueueTopic"/> (<see cref="MiniQueueOperations"/>), or reading <c>/metrics</c> (<see cref="Metrics"/>).
/// </summary>
internal sealed class AccessAuthorizationHandler(AccessControl access) : AuthorizationHandler<OperationAuthorizationRequirement>
{
    /// <summary>The requirement of <c>/metrics</c>.</summary>
    public static OperationAuthorizationRequirement Metrics { get; } = new() { Name = "metrics" };

    protected override Task HandleRequirementAsync(AuthorizationHandlerContext context, OperationAuthorizationRequirement requirement)
    {
        var permission = AccessFile.PermissionOf(requirement.Name);
        var topic = (context.Resource as MiniQueueTopic)?.Name;
        if (permission != Permissions.None && (topic is not null || permission == Permissions.Metrics)
            && context.User.Identity is { IsAuthenticated: true, Name: { } name }
            && access.Current.FindByName(name) is { } identity && identity.Allows(permission, topic))
        {
            context.Succeed(requirement);
        }

        return Task.CompletedTask;
    }
}
