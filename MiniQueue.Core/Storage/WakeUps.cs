using System.Threading.Channels;

namespace MiniQueue.Storage;

/// <summary>Requests to wake one background loop: a request made while another is pending joins it.</summary>
internal static class WakeUps
{
    public static Channel<bool> Create() => Channel.CreateBounded<bool>(new BoundedChannelOptions(1)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = true,
    });
}
