using System.Globalization;
using MiniQueue;

// Usage: MiniQueue.CrashChild <data directory> <first message id> <seed>
// Publishes and consumes on a durable queue until it is killed, reporting every step on stdout, one line each,
// ended by " ." so that a line cut short by the kill is recognisable:
//   READY .                the queue is open (recovery done)
//   P <id> .               the publish of <id> completed: it is durable
//   A <consumer> <id> .    consumer <consumer> is about to ACK <id>
//   F <consumer> .         every ACK this consumer reported before is durable (a later publish of its own completed)
var directory = args[0];
var firstId = long.Parse(args[1], CultureInfo.InvariantCulture);
var seed = int.Parse(args[2], CultureInfo.InvariantCulture);

var output = new StreamWriter(Console.OpenStandardOutput()) { AutoFlush = true };
var gate = new Lock();
void Report(string line)
{
    lock (gate)
    {
        output.WriteLine(line + " .");
    }
}

// Small pages and segments so that compaction runs while the process is being killed; a small body cache so that
// bodies are read back from the log; now and then a message larger than a page, written in parts.
await using var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions
{
    DataDirectory = directory,
    LogPageBytes = 64 * 1024,
    LogSegmentBytes = 256 * 1024,
    LogMemoryBytes = 256 * 1024,
    MaxMessageBytes = 256 * 1024,
    BodyCacheBytes = 4 * 1024,
});
Report("READY");

const int Publishers = 4;
const int Consumers = 3;
var publishers = Enumerable.Range(0, Publishers).Select(p => Task.Run(async () =>
{
    for (var k = 0L; ; k++)
    {
        var id = firstId + (p * 1_000_000) + k;
        var padding = id % 97 == 0 ? 100_000 + (int)(id % 1000) : (int)(id % 300);
        await queue.PublishAsync("crash", System.Text.Encoding.ASCII.GetBytes(id.ToString(CultureInfo.InvariantCulture) + new string('.', padding)));
        Report($"P {id}");
    }
}));

var consumers = Enumerable.Range(0, Consumers).Select(c => Task.Run(async () =>
{
    var random = new Random(seed * 31 + c);
    await using var consumer = queue.Subscribe("crash");
    var acks = 0;
    while (true)
    {
        var delivery = await consumer.ReceiveAsync();
        var text = System.Text.Encoding.ASCII.GetString(delivery.Payload.Span).TrimEnd('.');
        var roll = random.Next(100);
        if (roll < 55)
        {
            Report($"A {c} {text}");
            await consumer.AckAsync();
            if (++acks % 20 == 0)
            {
                await queue.PublishAsync($"fence-{c}", ReadOnlyMemory<byte>.Empty);
                Report($"F {c}");
            }
        }
        else if (roll < 70)
        {
            await consumer.NackAsync();
        }
        else if (roll < 80)
        {
            await consumer.BackAsync();
        }
        else
        {
            await consumer.DackAsync(TimeSpan.FromMilliseconds(random.Next(0, 1500)));
        }
    }
}));

await Task.WhenAll(publishers.Concat(consumers));
