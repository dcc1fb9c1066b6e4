using System.Buffers;
using System.Buffers.Text;
using System.IO.Pipelines;

namespace MiniQueue.Http.Protocol;

/// <summary>
/// Writes the lines of a consumer stream straight into the response's <see cref="PipeWriter"/>: a message is
/// <c>{"msg":"&lt;base64&gt;"}</c>, with <c>,"dackCount":N</c> when N &gt; 0, and a newline. Nothing is allocated; large
/// messages are encoded in chunks the size of the pipe's buffers.
/// </summary>
internal static class MessageWriter
{
    private static ReadOnlySpan<byte> MessageStart => "{\"msg\":\""u8;

    private static ReadOnlySpan<byte> DackCountStart => "\",\"dackCount\":"u8;

    private static ReadOnlySpan<byte> MessageEnd => "\"}\n"u8;

    private static ReadOnlySpan<byte> DackCountEnd => "}\n"u8;

    // The base64 written in one span at most; above it, the payload is encoded chunk by chunk.
    private const int ChunkBytes = 16 * 1024;

    public static void WriteMessage(PipeWriter writer, ReadOnlySpan<byte> payload, int dackCount)
    {
        writer.Write(MessageStart);
        var encodedLength = Base64.GetMaxEncodedToUtf8Length(payload.Length);
        if (encodedLength <= ChunkBytes)
        {
            var span = writer.GetSpan(encodedLength);
            Base64.EncodeToUtf8(payload, span, out _, out var written);
            writer.Advance(written);
        }
        else
        {
            WriteChunked(writer, payload);
        }

        if (dackCount > 0)
        {
            writer.Write(DackCountStart);
            var span = writer.GetSpan(11);
            Utf8Formatter.TryFormat(dackCount, span, out var written);
            writer.Advance(written);
            writer.Write(DackCountEnd);
        }
        else
        {
            writer.Write(MessageEnd);
        }
    }

    public static void WriteLine(PipeWriter writer, ReadOnlySpan<byte> line) => writer.Write(line);

    private static void WriteChunked(PipeWriter writer, ReadOnlySpan<byte> payload)
    {
        while (!payload.IsEmpty)
        {
            var span = writer.GetSpan(ChunkBytes);

            // Whole groups of 3 input bytes (4 output bytes) until the last chunk, which may end with padding.
            var take = Math.Min(payload.Length, Math.Min(span.Length, ChunkBytes) / 4 * 3);
            var isFinal = take == payload.Length;
            Base64.EncodeToUtf8(payload[..take], span, out var consumed, out var written, isFinal);
            writer.Advance(written);
            payload = payload[consumed..];
        }
    }
}
