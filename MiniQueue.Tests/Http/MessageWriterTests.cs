using System.IO.Pipelines;
using System.Text;
using MiniQueue.Http.Protocol;

namespace MiniQueue.Tests.Http;

/// <summary>The response lines, byte for byte, as the Go clients decode them.</summary>
public sealed class MessageWriterTests
{
    private static async Task<string> WriteAsync(byte[] payload, int dackCount)
    {
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 0));
        MessageWriter.WriteMessage(pipe.Writer, payload, dackCount);
        await pipe.Writer.CompleteAsync();
        var result = await pipe.Reader.ReadAsync();
        while (!result.IsCompleted)
        {
            pipe.Reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            result = await pipe.Reader.ReadAsync();
        }

        return Encoding.UTF8.GetString(result.Buffer);
    }

    [TestCase("hello", 0, "{\"msg\":\"aGVsbG8=\"}\n")]
    [TestCase("hi", 1, "{\"msg\":\"aGk=\",\"dackCount\":1}\n")]
    [TestCase("", 0, "{\"msg\":\"\"}\n")]
    [TestCase("", 3, "{\"msg\":\"\",\"dackCount\":3}\n")]
    [TestCase("a", 2147483647, "{\"msg\":\"YQ==\",\"dackCount\":2147483647}\n")]
    [TestCase("<&>", 0, "{\"msg\":\"PCY+\"}\n")]
    public async Task Message_IsOneJsonLine(string text, int dackCount, string line)
    {
        Assert.That(await WriteAsync(Encoding.UTF8.GetBytes(text), dackCount), Is.EqualTo(line));
    }

    [TestCase(16 * 1024 * 3 / 4 - 1)]
    [TestCase(16 * 1024 * 3 / 4)]
    [TestCase(16 * 1024 * 3 / 4 + 1)]
    [TestCase(100_000)]
    [TestCase(MiniQueueOptions.DefaultMaxMessageBytes)]
    public async Task LargeMessage_IsEncodedInChunks_ToTheSameBase64(int size)
    {
        var payload = new byte[size];
        new Random(size).NextBytes(payload);

        Assert.That(await WriteAsync(payload, 0), Is.EqualTo($"{{\"msg\":\"{Convert.ToBase64String(payload)}\"}}\n"));
    }
}
