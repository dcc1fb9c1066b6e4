using System.IO.Pipelines;
using System.Text;
using MiniQueue.Http.Protocol;

namespace MiniQueue.Tests.Http;

/// <summary>The incremental command reader over a pipe, without HTTP: splits, whitespace, escapes, limits, errors.</summary>
[CancelAfter(30_000)]
public sealed class CommandReaderTests
{
    private static async Task<List<Command>> ReadAllAsync(Pipe pipe)
    {
        var reader = new CommandReader(pipe.Reader);
        var commands = new List<Command>();
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        while (true)
        {
            var command = await reader.ReadAsync(timeout.Token);
            commands.Add(command);
            if (command.Kind is CommandKind.End or CommandKind.DecodeError or CommandKind.DackTooFewArguments or CommandKind.DackInvalidArgument)
            {
                return commands;
            }
        }
    }

    private static async Task<List<Command>> ReadAllAsync(byte[] body, int pieceSize)
    {
        var pipe = new Pipe();
        var reading = ReadAllAsync(pipe);
        for (var offset = 0; offset < body.Length; offset += pieceSize)
        {
            await pipe.Writer.WriteAsync(body.AsMemory(offset, Math.Min(pieceSize, body.Length - offset)));
        }

        await pipe.Writer.CompleteAsync();
        return await reading;
    }

    private static readonly Command[] s_expected =
    [
        new(CommandKind.Init),
        new(CommandKind.Ack),
        new(CommandKind.Dack, 5),
        new(CommandKind.Unrecognised),
        new(CommandKind.Nack),
        new(CommandKind.Back),
        new(CommandKind.Dack, -3),
        new(CommandKind.End),
    ];

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    [TestCase(7)]
    [TestCase(4096)]
    public async Task Commands_SplitAnywhere_AreReadTheSame(int pieceSize)
    {
        var body = Encoding.UTF8.GetBytes("\"INIT\"\n\"ACK\"\r\n \"DACK 5\"\tnull\n\"NACK x\"\"BACK\"\n\"\\u0044ACK -3\"\n  \n");

        Assert.That(await ReadAllAsync(body, pieceSize), Is.EqualTo(s_expected));
    }

    [Test]
    public async Task Command_IsReturned_AsSoonAsItsClosingQuoteArrives()
    {
        var pipe = new Pipe();
        var reader = new CommandReader(pipe.Reader);
        await pipe.Writer.WriteAsync(Encoding.UTF8.GetBytes("\"AC"));

        var read = reader.ReadAsync();
        Assert.That(read.IsCompleted, Is.False, "the string is not closed");
        await pipe.Writer.WriteAsync(Encoding.UTF8.GetBytes("K\""));

        Assert.That(await read.AsTask().WaitAsync(TestSupport.Bound), Is.EqualTo(new Command(CommandKind.Ack)));
    }

    [Test]
    public async Task NullFollowedByTheEndOfTheBody_IsUnrecognised_ThenTheEnd()
    {
        Assert.That(await ReadAllAsync(Encoding.UTF8.GetBytes("null"), 4096),
            Is.EqualTo(new[] { new Command(CommandKind.Unrecognised), new Command(CommandKind.End) }));
    }

    [TestCase("5\n")]
    [TestCase("-1 ")]
    [TestCase("true\n")]
    [TestCase("{}")]
    [TestCase("[]")]
    [TestCase("\"ACK\" , \"ACK\"")]
    [TestCase("\"ACK\"\v")]
    [TestCase("\"ACK\"\u00A0")]
    [TestCase("// comment\n")]
    [TestCase("\"unterminated")]
    [TestCase("nul")]
    [TestCase("\"\\x\"")]
    public async Task AnythingButJsonStrings_IsADecodingError(string body)
    {
        var commands = await ReadAllAsync(Encoding.UTF8.GetBytes(body), 4096);

        Assert.That(commands[^1], Is.EqualTo(new Command(CommandKind.DecodeError)));
    }

    [Test]
    public async Task AfterAnError_TheReaderReadsNoMore()
    {
        var pipe = new Pipe();
        var reader = new CommandReader(pipe.Reader);
        await pipe.Writer.WriteAsync(Encoding.UTF8.GetBytes("5 \"ACK\"\n"));

        Assert.That(await reader.ReadAsync(), Is.EqualTo(new Command(CommandKind.DecodeError)));
        Assert.That(await reader.ReadAsync(), Is.EqualTo(new Command(CommandKind.End)));
    }

    [Test]
    public async Task InvalidUtf8_InAString_IsADecodingError()
    {
        var commands = await ReadAllAsync([(byte)'"', 0xC3, (byte)'"', (byte)'\n'], 4096);

        Assert.That(commands, Is.EqualTo(new[] { new Command(CommandKind.DecodeError) }));
    }

    [TestCase(1)]
    [TestCase(1000)]
    [TestCase(64 * 1024)]
    public async Task AnOverlongCommand_IsADecodingError_WithinTheSmallestHttp2Window(int pieceSize)
    {
        // The pipe holds at most what HTTP/2's smallest stream window lets a client send ahead of the server: a reader
        // that waited for more than that would wait forever, and this test would time out.
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 65_535, resumeWriterThreshold: 32_768));
        var reading = ReadAllAsync(pipe);
        var piece = new byte[pieceSize];
        piece.AsSpan().Fill((byte)'A');
        var writing = Task.Run(async () =>
        {
            // A 1 GiB "command", unless the reader gives up first.
            await pipe.Writer.WriteAsync(Encoding.UTF8.GetBytes("\""));
            for (long written = 0; written < (1L << 30); written += pieceSize)
            {
                if ((await pipe.Writer.WriteAsync(piece)).IsCompleted)
                {
                    return;
                }
            }
        });

        Assert.That(await reading, Is.EqualTo(new[] { new Command(CommandKind.DecodeError) }));
        Assert.That(CommandReader.MaxCommandBytes, Is.LessThan(65_535), "a peer may send no more than its window ahead");
        await pipe.Reader.CompleteAsync();
        await writing.WaitAsync(TestSupport.Bound);
    }

    [Test]
    public async Task ACommandJustUnderTheLimit_IsRead()
    {
        var text = "ACK " + new string('x', CommandReader.MaxCommandBytes - 100);

        var commands = await ReadAllAsync(Encoding.UTF8.GetBytes($"\"{text}\"\n"), 1000);

        Assert.That(commands, Is.EqualTo(new[] { new Command(CommandKind.Ack), new Command(CommandKind.End) }));
    }

    [TestCase("INIT", "Init", 0)]
    [TestCase("INIT now", "Init", 0)]
    [TestCase("ACK", "Ack", 0)]
    [TestCase("ACK extra words", "Ack", 0)]
    [TestCase("NACK", "Nack", 0)]
    [TestCase("BACK", "Back", 0)]
    [TestCase("TOUCH", "Touch", 0)]
    [TestCase("TOUCH now", "Touch", 0)]
    [TestCase("touch", "Unrecognised", 0)]
    [TestCase("DACK 10", "Dack", 10)]
    [TestCase("DACK +10", "Dack", 10)]
    [TestCase("DACK -10", "Dack", -10)]
    [TestCase("DACK 007", "Dack", 7)]
    [TestCase("DACK 2147483647", "Dack", int.MaxValue)]
    [TestCase("DACK -2147483648", "Dack", int.MinValue)]
    [TestCase("DACK 3 later", "Dack", 3)]
    [TestCase("DACK", "DackTooFewArguments", 0)]
    [TestCase("DACK ", "DackInvalidArgument", 0)]
    [TestCase("DACK  3", "DackInvalidArgument", 0)]
    [TestCase("DACK 3s", "DackInvalidArgument", 0)]
    [TestCase("DACK 1e3", "DackInvalidArgument", 0)]
    [TestCase("DACK 1,000", "DackInvalidArgument", 0)]
    [TestCase("DACK 2147483648", "DackInvalidArgument", 0)]
    [TestCase("DACK - 1", "DackInvalidArgument", 0)]
    [TestCase("DACK\t3", "Unrecognised", 0)]
    [TestCase("dack 3", "Unrecognised", 0)]
    [TestCase("ACK\n", "Unrecognised", 0)]
    [TestCase("", "Unrecognised", 0)]
    [TestCase(" INIT", "Unrecognised", 0)]
    public void CommandText_IsParsedByItsFirstWord(string text, string kind, int seconds)
    {
        Assert.That(CommandReader.ParseText(Encoding.UTF8.GetBytes(text)), Is.EqualTo(new Command(Enum.Parse<CommandKind>(kind), seconds)));
    }
}
