namespace MiniQueue.Http;

/// <summary>
/// The resource a MiniQueue request is authorized on when <see cref="MiniQueueHttpOptions.AuthorizeTopics"/> is set: the
/// topic it names. Write an <c>AuthorizationHandler&lt;OperationAuthorizationRequirement, MiniQueueTopic&gt;</c> to
/// decide who may do which of <see cref="MiniQueueOperations"/> on which topic (docs/security.md has an example).
/// </summary>
public sealed class MiniQueueTopic
{
    /// <summary>The resource of a request that names <paramref name="name"/>.</summary>
    public MiniQueueTopic(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        Name = name;
    }

    /// <summary>The topic's name, as the request named it (a valid topic name).</summary>
    public string Name { get; }

    /// <inheritdoc/>
    public override string ToString() => Name;
}
