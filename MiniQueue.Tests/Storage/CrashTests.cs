using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Time.Testing;

namespace MiniQueue.Tests.Storage;

/// <summary>
/// A child process (MiniQueue.CrashChild) publishes, consumes, NACKs, BACKs and DACKs on a durable queue and is killed
/// with SIGKILL at random moments, many times over the same data directory. Then the directory is recovered and
/// drained: every publish that completed is delivered at least once (or was ACKed), and the only messages delivered
/// again after being ACKed are those whose ACK was still in flight to the disk.
/// </summary>
public sealed class CrashTests
{
    [Test]
    [CancelAfter(120_000)]
    public Task KilledRepeatedly_LosesNothingAcknowledged() => RunAsync(rounds: 4, seed: 1);

    /// <summary>The long version: <c>dotnet test MiniQueue.slnx -c Release --filter TestCategory=Soak</c>.</summary>
    [Test]
    [Explicit("Long: run with --filter TestCategory=Soak")]
    [Category("Soak")]
    [CancelAfter(1_800_000)]
    public Task Soak_KilledManyTimes_LosesNothingAcknowledged() => RunAsync(rounds: 60, seed: 7);

    private static async Task RunAsync(int rounds, int seed)
    {
        using var directory = new TempDirectory();
        var random = new Random(seed);
        var published = new HashSet<long>();
        var acked = new HashSet<long>();
        var durablyAcked = new HashSet<long>();
        var ackedSinceFence = new Dictionary<int, List<long>>();

        for (var round = 0; round < rounds; round++)
        {
            var firstId = (round + 1) * 10_000_000L;
            var lines = await RunChildUntilKilledAsync(directory.Path, firstId, seed * 1000 + round, minimumPublishes: random.Next(20, 400), random);
            foreach (var line in lines)
            {
                // A line the kill cut short has no " ." ending and is ignored.
                if (!line.EndsWith(" .", StringComparison.Ordinal))
                {
                    continue;
                }

                var parts = line.Split(' ');
                switch (parts[0])
                {
                    case "P":
                        published.Add(long.Parse(parts[1], CultureInfo.InvariantCulture));
                        break;
                    case "A":
                        var id = long.Parse(parts[2], CultureInfo.InvariantCulture);
                        acked.Add(id);
                        var consumer = int.Parse(parts[1], CultureInfo.InvariantCulture);
                        if (!ackedSinceFence.TryGetValue(consumer, out var pending))
                        {
                            ackedSinceFence[consumer] = pending = [];
                        }

                        pending.Add(id);
                        break;
                    case "F":
                        var fenced = int.Parse(parts[1], CultureInfo.InvariantCulture);
                        durablyAcked.UnionWith(ackedSinceFence[fenced]);
                        ackedSinceFence[fenced].Clear();
                        break;
                }
            }

            // A new process has new consumers: nothing fences the old ones' remaining ACKs any more.
            ackedSinceFence.Clear();
        }

        // Recover, with a clock a day ahead so that every delayed message is due, and drain.
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow.AddDays(1));
        var drained = new List<long>();
        await using (var queue = await MiniQueueEngine.OpenAsync(new MiniQueueOptions { DataDirectory = directory.Path, TimeProvider = clock, MaxMessageBytes = 256 * 1024 }))
        {
            foreach (var (text, _) in await DurableTestSupport.DrainAsync(queue, "crash"))
            {
                drained.Add(long.Parse(text.TrimEnd('.'), CultureInfo.InvariantCulture));
            }
        }

        var delivered = drained.ToHashSet();
        var lost = published.Where(id => !delivered.Contains(id) && !acked.Contains(id)).Order().ToList();
        var redelivered = durablyAcked.Where(delivered.Contains).Order().ToList();
        var duplicates = drained.GroupBy(id => id).Where(group => group.Count() > 1).Select(group => group.Key).ToList();
        TestContext.Out.WriteLine(
            $"{rounds} kills: {published.Count} publishes completed, {acked.Count} ACKs reported ({durablyAcked.Count} known durable), {drained.Count} left after recovery");

        using (Assert.EnterMultipleScope())
        {
            Assert.That(published, Is.Not.Empty, "the child did some work");
            Assert.That(lost, Is.Empty, "every publish that completed is delivered at least once");
            Assert.That(redelivered, Is.Empty, "an ACK known to be durable is never undone");
            Assert.That(duplicates, Is.Empty, "recovery holds each message once");
        }
    }

    /// <summary>Starts the child, lets it work until it reported <paramref name="minimumPublishes"/> publishes and a random moment more, and kills it with SIGKILL.</summary>
    private static async Task<List<string>> RunChildUntilKilledAsync(string directory, long firstId, int seed, int minimumPublishes, Random random)
    {
        var child = Path.Combine(AppContext.BaseDirectory, "MiniQueue.CrashChild.dll");
        var dotnet = Environment.ProcessPath is { } host && Path.GetFileNameWithoutExtension(host) == "dotnet" ? host : "dotnet";
        var start = new ProcessStartInfo(dotnet)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { child, directory, firstId.ToString(CultureInfo.InvariantCulture), seed.ToString(CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var lines = new List<string>();
        var publishes = 0;
        var enough = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var reader = Task.Run(async () =>
        {
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                lock (lines)
                {
                    lines.Add(line);
                }

                if (line.StartsWith("P ", StringComparison.Ordinal) && ++publishes >= minimumPublishes)
                {
                    enough.TrySetResult();
                }
            }

            enough.TrySetResult();
        });
        var errors = process.StandardError.ReadToEndAsync();

        try
        {
            await enough.Task.WaitAsync(TimeSpan.FromSeconds(60));
            await Task.Delay(random.Next(0, 250));
            if (process.HasExited)
            {
                Assert.Fail($"the child died on its own: {await errors}");
            }
        }
        finally
        {
            // Whatever happened above, the child never outlives its round (it would run on after the test run).
            process.Kill(entireProcessTree: true);   // SIGKILL on Linux
        }

        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        await reader.WaitAsync(TimeSpan.FromSeconds(30));
        lock (lines)
        {
            return [.. lines];
        }
    }
}
