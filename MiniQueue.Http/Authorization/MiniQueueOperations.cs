using Microsoft.AspNetCore.Authorization.Infrastructure;

namespace MiniQueue.Http;

/// <summary>
/// The operations of MiniQueue's protocol, as the requirements a request is authorized with (resource-based
/// authorization: the resource is the <see cref="MiniQueueTopic"/>) when <see cref="MiniQueueHttpOptions.AuthorizeTopics"/>
/// is set. A handler tells them apart by <see cref="OperationAuthorizationRequirement.Name"/> or by reference.
/// </summary>
public static class MiniQueueOperations
{
    /// <summary><c>POST /publish/{topic}</c>.</summary>
    public static OperationAuthorizationRequirement Publish { get; } = new() { Name = "publish" };

    /// <summary><c>POST /subscribe/{topic}</c>: consuming, with every settle on the stream (ACK, NACK, BACK, DACK, TOUCH).</summary>
    public static OperationAuthorizationRequirement Subscribe { get; } = new() { Name = "subscribe" };

    /// <summary><c>DELETE /{topic}</c>.</summary>
    public static OperationAuthorizationRequirement Purge { get; } = new() { Name = "purge" };

    /// <summary><c>POST /redrive/{topic}</c>.</summary>
    public static OperationAuthorizationRequirement Redrive { get; } = new() { Name = "redrive" };
}
