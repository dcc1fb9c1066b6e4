using MiniQueue.Storage;

namespace MiniQueue.Tests.Engine;

public sealed class LogRecordTests
{
    private static readonly byte[] s_topic = TestSupport.Bytes("tøpic");

    // LogRecord is internal, so the cases travel as objects.
    private static IEnumerable<object> Records()
    {
        yield return LogRecord.Publish(1, s_topic, TestSupport.Bytes("body"));
        yield return LogRecord.Publish(long.MaxValue, s_topic, ReadOnlyMemory<byte>.Empty);
        yield return LogRecord.Deliver(2);
        yield return LogRecord.Ack(3);
        yield return LogRecord.Nack(4);
        yield return LogRecord.Back(5);
        yield return LogRecord.Dack(6, DateTimeOffset.MaxValue.UtcTicks, int.MaxValue);
        yield return LogRecord.Purge(s_topic, 7);
        yield return LogRecord.PublishPart(8, 65535, TestSupport.Bytes("the first bytes of a large body"));
        yield return LogRecord.PublishPart(8, 0, ReadOnlyMemory<byte>.Empty);
        var parts = new byte[3 * sizeof(long)];
        BitConverter.TryWriteBytes(parts.AsSpan(8), long.MaxValue);
        yield return LogRecord.PublishLarge(9, s_topic, 1_000_000, parts, TestSupport.Bytes("its last bytes"));
    }

    [TestCaseSource(nameof(Records))]
    public void Records_RoundTrip(object boxed)
    {
        var record = (LogRecord)boxed;
        var bytes = record.ToArray();
        var read = LogRecord.Read(bytes);

        using (Assert.EnterMultipleScope())
        {
            Assert.That(bytes, Has.Length.EqualTo(record.SerializedLength));
            Assert.That(read.Kind, Is.EqualTo(record.Kind));
            Assert.That(read.MessageId, Is.EqualTo(record.MessageId));
            Assert.That(read.Topic.ToArray(), Is.EqualTo(record.Topic.ToArray()));
            Assert.That(read.Payload.ToArray(), Is.EqualTo(record.Payload.ToArray()));
            Assert.That(read.DueTicks, Is.EqualTo(record.DueTicks));
            Assert.That(read.DackCount, Is.EqualTo(record.DackCount));
            Assert.That(read.TotalLength, Is.EqualTo(record.TotalLength));
            Assert.That(read.Parts.ToArray(), Is.EqualTo(record.Parts.ToArray()));
        }
    }

    [TestCase(new byte[0])]
    [TestCase(new byte[] { 3, 1, 0, 0, 0, 0, 0, 0 })]
    [TestCase(new byte[] { 99, 1, 0, 0, 0, 0, 0, 0, 0 })]
    [TestCase(new byte[] { 1, 1, 0, 0, 0, 0, 0, 0, 0, 5, (byte)'a' })]
    [TestCase(new byte[] { 6, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3 })]
    [TestCase(new byte[] { 3, 1, 0, 0, 0, 0, 0, 0, 0, 9 })]
    [TestCase(new byte[] { 11, 1, 0, 0, 0, 0, 0, 0, 0, 7 })]
    [TestCase(new byte[] { 12, 1, 0, 0, 0, 0, 0, 0, 0, 1, (byte)'t', 10, 0, 0, 0, 2, 0, 1, 2, 3 })]
    [TestCase(new byte[] { 12, 1, 0, 0, 0, 0, 0, 0, 0, 1, (byte)'t', 1, 0, 0, 0, 0, 0, 1, 2, 3 })]
    public void MalformedRecords_AreRejected(byte[] bytes) =>
        Assert.That(() => LogRecord.Read(bytes), Throws.TypeOf<InvalidDataException>());
}
