using System.Buffers;
using System.Globalization;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Unicode;

namespace MiniQueue.Http.Protocol;

/// <summary>What a consumer stream's client asked for.</summary>
internal enum CommandKind
{
    /// <summary>The request body ended between commands.</summary>
    End,
    Init,
    Ack,
    Nack,
    Back,
    Dack,

    /// <summary>"TOUCH": renew the lease of the held message (an extension, docs/PROTOCOL.md "Leases").</summary>
    Touch,

    /// <summary>Not a command: the read was interrupted (<see cref="PipeReader.CancelPendingRead"/>) so the stream can write something first.</summary>
    Interrupted,

    /// <summary>A JSON string with an unknown first word, or JSON <c>null</c>: the stream goes on.</summary>
    Unrecognised,

    /// <summary>Not a JSON string, invalid JSON, or a command over the size cap: the stream closes.</summary>
    DecodeError,

    /// <summary><c>DACK</c> without an argument: the stream closes.</summary>
    DackTooFewArguments,

    /// <summary><c>DACK x</c> where x is not a 32-bit integer: the stream closes.</summary>
    DackInvalidArgument,
}

/// <summary>One command of a consumer stream; <see cref="DackSeconds"/> is the delay of a DACK.</summary>
internal readonly record struct Command(CommandKind Kind, int DackSeconds = 0);

/// <summary>
/// Reads the commands of a consumer stream incrementally from the request body: a sequence of JSON strings separated
/// by any JSON whitespace. A command is returned as soon as its closing quote has arrived; the reader state of
/// <see cref="Utf8JsonReader"/> is carried across reads, and no command may take more than
/// <see cref="MaxCommandBytes"/> bytes, so a client cannot make the server buffer without bound.
/// </summary>
internal sealed class CommandReader
{
    /// <summary>
    /// The most bytes one command (its JSON text, whitespace before it included) may take: 16 KiB, far more than any
    /// command needs. It must stay below HTTP/2's smallest stream window (65,535 bytes): the server cannot see more
    /// of a stream than the window lets the client send before it consumes, so a larger cap could wait forever.
    /// </summary>
    public const int MaxCommandBytes = 16 * 1024;

    private static readonly JsonReaderOptions s_options = new() { AllowMultipleValues = true, CommentHandling = JsonCommentHandling.Disallow };

    private readonly PipeReader _reader;
    private JsonReaderState _state = new(s_options);
    private byte[]? _scratch;
    private bool _isDone;

    public CommandReader(PipeReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        _reader = reader;
    }

    /// <summary>
    /// The next command. After <see cref="CommandKind.End"/> or an error that closes the stream, every further call
    /// returns <see cref="CommandKind.End"/> without reading.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<Command> ReadAsync(CancellationToken cancellationToken = default)
    {
        if (_isDone)
        {
            return new(CommandKind.End);
        }

        while (true)
        {
            var result = await _reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (result.IsCanceled)
            {
                // Nothing is consumed or examined: the next read sees the same bytes at once.
                _reader.AdvanceTo(buffer.Start);
                return new(CommandKind.Interrupted);
            }

            if (TryParse(buffer, result.IsCompleted, out var command, out var consumed))
            {
                _reader.AdvanceTo(consumed);
                _isDone = command.Kind is CommandKind.End or CommandKind.DecodeError or CommandKind.DackTooFewArguments or CommandKind.DackInvalidArgument;
                return command;
            }

            if (buffer.Slice(consumed).Length > MaxCommandBytes)
            {
                _reader.AdvanceTo(buffer.End);
                _isDone = true;
                return new(CommandKind.DecodeError);
            }

            _reader.AdvanceTo(consumed, buffer.End);
        }
    }

    /// <summary>Parses one command from the front of <paramref name="buffer"/>; false when it needs more data.</summary>
    internal bool TryParse(ReadOnlySequence<byte> buffer, bool isFinalBlock, out Command command, out SequencePosition consumed)
    {
        var json = new Utf8JsonReader(buffer, isFinalBlock, _state);
        try
        {
            if (!json.Read())
            {
                // Only whitespace, or the start of a value that has not fully arrived.
                _state = json.CurrentState;
                consumed = buffer.GetPosition(json.BytesConsumed);
                command = new(CommandKind.End);
                return isFinalBlock;
            }
        }
        catch (JsonException)
        {
            consumed = buffer.End;
            command = new(CommandKind.DecodeError);
            return true;
        }

        _state = json.CurrentState;
        consumed = json.Position;
        command = json.TokenType switch
        {
            JsonTokenType.String => ParseString(ref json),
            JsonTokenType.Null => new(CommandKind.Unrecognised),
            _ => new(CommandKind.DecodeError),
        };
        return true;
    }

    private Command ParseString(ref Utf8JsonReader json)
    {
        var length = json.HasValueSequence ? json.ValueSequence.Length : json.ValueSpan.Length;
        if (length > MaxCommandBytes)
        {
            return new(CommandKind.DecodeError);
        }

        ReadOnlySpan<byte> text;
        if (!json.HasValueSequence && !json.ValueIsEscaped)
        {
            text = json.ValueSpan;
        }
        else
        {
            // Unescaping never makes a string longer.
            var scratch = _scratch is { } existing && existing.Length >= length ? existing : _scratch = new byte[Math.Max(64, (int)length)];
            try
            {
                text = scratch.AsSpan(0, json.CopyString(scratch));
            }
            catch (InvalidOperationException)
            {
                // An escape that is not valid UTF-16 (a lone surrogate).
                return new(CommandKind.DecodeError);
            }
        }

        // JSON text is UTF-8; the reader checks escapes but not raw bytes.
        return Utf8.IsValid(text) ? ParseText(text) : new(CommandKind.DecodeError);
    }

    /// <summary>Parses the text of a command: its first space-separated word, and for DACK the second.</summary>
    internal static Command ParseText(ReadOnlySpan<byte> text)
    {
        var space = text.IndexOf((byte)' ');
        var word = space < 0 ? text : text[..space];
        if (word.SequenceEqual("INIT"u8))
        {
            return new(CommandKind.Init);
        }

        if (word.SequenceEqual("ACK"u8))
        {
            return new(CommandKind.Ack);
        }

        if (word.SequenceEqual("NACK"u8))
        {
            return new(CommandKind.Nack);
        }

        if (word.SequenceEqual("BACK"u8))
        {
            return new(CommandKind.Back);
        }

        if (word.SequenceEqual("TOUCH"u8))
        {
            return new(CommandKind.Touch);
        }

        if (!word.SequenceEqual("DACK"u8))
        {
            return new(CommandKind.Unrecognised);
        }

        if (space < 0)
        {
            return new(CommandKind.DackTooFewArguments);
        }

        var rest = text[(space + 1)..];
        var end = rest.IndexOf((byte)' ');
        var argument = end < 0 ? rest : rest[..end];
        return int.TryParse(argument, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var seconds)
            ? new(CommandKind.Dack, seconds)
            : new(CommandKind.DackInvalidArgument);
    }
}
