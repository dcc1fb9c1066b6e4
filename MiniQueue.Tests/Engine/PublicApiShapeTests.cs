using System.Threading.Tasks.Sources;

namespace MiniQueue.Tests.Engine;

/// <summary>What the engine's public types show of their insides.</summary>
public sealed class PublicApiShapeTests
{
    [Test]
    public void TheConsumer_DoesNotExposeItsWaitAsAValueTaskSource()
    {
        // A caller that could reach it could complete or reset another caller's wait for a message.
        Assert.That(typeof(MiniQueueConsumer).GetInterfaces().Where(static type => type.IsGenericType).Select(static type => type.GetGenericTypeDefinition()),
            Does.Not.Contain(typeof(IValueTaskSource<>)));
        Assert.That(typeof(MiniQueueConsumer).GetInterfaces(), Does.Not.Contain(typeof(IValueTaskSource)));
    }
}
