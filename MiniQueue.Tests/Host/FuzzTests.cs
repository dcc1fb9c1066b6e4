using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using CsCheck;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using MiniQueue.Host.Security;
using MiniQueue.Http.Protocol;

namespace MiniQueue.Tests.Host;

/// <summary>
/// Bounded randomized tests (CsCheck) of what an attacker controls: the consumer stream's command reader, the topic in
/// a request's target, and the access file's parser (a local user who can write it). Each runs a fixed number of cases,
/// so its time is bounded; a failure prints the seed and the shrunk input that CsCheck found.
/// </summary>
[CancelAfter(120_000)]
public sealed class FuzzTests
{
    private const string ValidFile = """
        { "identities": [
            { "name": "a", "token_sha256": "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",
              "grants": [ { "topics": "orders.*", "allow": ["publish", "subscribe"] }, { "allow": ["metrics"] } ] },
            { "name": "b", "grants": [ { "topics": "jobs", "allow": ["purge", "redrive"] } ] } ] }
        """;

    [Test]
    public void TheAccessFileParser_TakesAFileOrSaysWhyNot_WhateverItIsGiven()
    {
        static void ParseOrRefuse(string text)
        {
            try
            {
                var file = AccessFile.Parse(text);
                Assert.That(file.Count, Is.GreaterThanOrEqualTo(0));
            }
            catch (FormatException exception)
            {
                Assert.That(exception.Message, Is.Not.Empty);
            }
        }

        // Any text, and the valid file with a stretch of it replaced (the likelier way a file goes wrong).
        Gen.String.Sample(ParseOrRefuse, iter: 20_000);
        Gen.Select(Gen.Int[0, ValidFile.Length], Gen.Int[0, 12], Gen.String[0, 6]).Sample(
            (at, length, with) => ParseOrRefuse(ValidFile.Remove(at, Math.Min(length, ValidFile.Length - at)).Insert(at, with)),
            iter: 20_000);
    }

    [Test]
    public void AToken_IsFoundExactly_AndNoOtherStringFindsIt()
    {
        var file = AccessFile.Parse(ValidFile);
        Assert.That(file.FindByToken("test")?.Name, Is.EqualTo("a"), "9F86... is the SHA-256 of \"test\"");
        Gen.String.Where(static token => token != "test").Sample(token => Assert.That(file.FindByToken(token), Is.Null), iter: 20_000);
    }

    [Test]
    public void TheCommandReader_EndsOrReportsAnErrorForAnyBytes_AndSplittingTheBodyChangesNothing()
    {
        // Bytes from the protocol's own alphabet as well as any bytes, so that commands are often nearly valid.
        var pieces = OneOf("\"", "INIT", "ACK", "NACK", "BACK", "DACK", "TOUCH", " ", "\n", "\\", "\\u00", "-1", "99999999999", "é", "null", "{");
        var nearlyValid = pieces.Array[0, 30].Select(static parts => Encoding.UTF8.GetBytes(string.Concat(parts)));
        Gen.OneOf(Gen.Byte.Array[0, 200], nearlyValid).Select(Gen.Int[1, 16]).Sample(
            (body, piece) =>
            {
                var whole = ReadAll(body, body.Length + 1);
                Assert.That(whole[^1].Kind, Is.AnyOf(CommandKind.End, CommandKind.DecodeError, CommandKind.DackTooFewArguments, CommandKind.DackInvalidArgument));
                Assert.That(ReadAll(body, piece), Is.EqualTo(whole));
            },
            iter: 3_000);
    }

    [Test]
    public void TheTopicOfAnyTarget_IsAValidNameOrNone()
    {
        var segment = Gen.OneOf(Gen.String[0, 20], OneOf("%", "%2F", "%25", "%C3%A9", "%FF", ".", "..", "/", "?", "#", "%00").Array[0, 6].Select(static parts => string.Concat(parts)));
        segment.Select(Gen.Bool).Sample(
            (name, decodedEqualsRaw) =>
            {
                var context = new DefaultHttpContext();
                var raw = "/publish/" + name;
                context.Features.Get<IHttpRequestFeature>()!.RawTarget = raw;
                context.Request.Path = new PathString(decodedEqualsRaw ? raw : Uri.UnescapeDataString(raw));
                var topic = TopicRoute.GetTopic(context);
                Assert.That(topic is null || TopicName.IsValid(topic), Is.True, topic);
            },
            iter: 20_000);
    }

    /// <summary>One of <paramref name="values"/>, each as likely.</summary>
    private static Gen<string> OneOf(params string[] values) => Gen.Int[0, values.Length - 1].Select(i => values[i]);

    private static List<Command> ReadAll(byte[] body, int pieceSize)
    {
        var pipe = new Pipe();
        for (var offset = 0; offset < body.Length; offset += pieceSize)
        {
            pipe.Writer.Write(body.AsSpan(offset, Math.Min(pieceSize, body.Length - offset)));
        }

        pipe.Writer.Complete();
        var reader = new CommandReader(pipe.Reader);
        var commands = new List<Command>();
        using var timeout = new CancellationTokenSource(TestSupport.Bound);
        while (true)
        {
            var command = reader.ReadAsync(timeout.Token).AsTask().GetAwaiter().GetResult();
            commands.Add(command);
            if (command.Kind is CommandKind.End or CommandKind.DecodeError or CommandKind.DackTooFewArguments or CommandKind.DackInvalidArgument)
            {
                return commands;
            }
        }
    }
}
