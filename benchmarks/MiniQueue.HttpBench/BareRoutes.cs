using System.Buffers;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;

namespace MiniQueue.HttpBench;

/// <summary>The ceiling: the least a server speaking the protocol's shape can do.</summary>
internal static class BareRoutes
{
    // A 100-byte message, base64: what the miniqueue server sends for the prefilled messages.
    private static readonly byte[] s_line = System.Text.Encoding.ASCII.GetBytes($"{{\"msg\":\"{Convert.ToBase64String(new byte[100])}\"}}\n");

    public static void Map(WebApplication app, GroupCommit? commit = null)
    {
        if (commit is null)
        {
            app.MapPost("/publish/{topic}", PublishAsync);
        }
        else
        {
            app.MapPost("/publish/{topic}", context => PublishDurablyAsync(context, commit));
        }

        app.MapPost("/subscribe/{topic}", SubscribeAsync);
    }

    private static async Task PublishAsync(HttpContext context)
    {
        var reader = context.Request.BodyReader;
        while (true)
        {
            var result = await reader.ReadAsync();
            reader.AdvanceTo(result.Buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        context.Response.StatusCode = StatusCodes.Status201Created;
    }

    private static async Task PublishDurablyAsync(HttpContext context, GroupCommit commit)
    {
        var reader = context.Request.BodyReader;
        ReadResult result;
        while (true)
        {
            result = await reader.ReadAsync();
            if (result.IsCompleted)
            {
                break;
            }

            reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }

        var wait = commit.WaitAsync(result.Buffer.IsSingleSegment ? result.Buffer.FirstSpan : result.Buffer.ToArray());
        reader.AdvanceTo(result.Buffer.End);
        await wait;
        context.Response.StatusCode = StatusCodes.Status201Created;
    }

    private static async Task SubscribeAsync(HttpContext context)
    {
        if (context.Features.Get<IHttpMinRequestBodyDataRateFeature>() is { } rate)
        {
            rate.MinDataRate = null;
        }

        context.Response.ContentType = "text/plain; charset=utf-8";
        var output = context.Response.BodyWriter;
        await output.FlushAsync();
        var reader = context.Request.BodyReader;
        while (true)
        {
            ReadResult result;
            try
            {
                result = await reader.ReadAsync(context.RequestAborted);
            }
            catch (Exception exception) when (exception is OperationCanceledException or IOException)
            {
                return;
            }

            var buffer = result.Buffer;
            while (buffer.PositionOf((byte)'\n') is { } newline)
            {
                buffer = buffer.Slice(buffer.GetPosition(1, newline));
                output.Write(s_line);
                if ((await output.FlushAsync()).IsCompleted)
                {
                    return;
                }
            }

            reader.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                return;
            }
        }
    }
}
