using System.Threading.Channels;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using MiniQueue.Storage;

namespace MiniQueue.Benchmarks;

/// <summary>
/// The in-memory engine: publish, and receive+ACK, on one thread and on two (this machine has two cores).
/// The baseline is an unbounded System.Threading.Channels channel doing the least a queue can do (copy the payload,
/// enqueue; dequeue), measured in the same run, so the ratios show what the engine's rules cost.
/// Every benchmark moves <see cref="Messages"/> messages of <see cref="PayloadBytes"/> bytes per invocation;
/// the reported time and allocation are per message.
/// </summary>
[MemoryDiagnoser]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class InMemoryBenchmarks
{
    private const int Messages = 1_000_000;
    private const int PayloadBytes = 100;

    private readonly byte[] _payload = new byte[PayloadBytes];
    private MiniQueueEngine _queue = null!;
    private Channel<byte[]> _channel = null!;

    [IterationSetup(Targets = [nameof(Publish), nameof(PublishConcurrent), nameof(ChannelWrite), nameof(ChannelRoundTrip), nameof(PublishReceiveAck)])]
    public void SetupEmpty() => Open(prefill: 0);

    [IterationSetup(Targets = [nameof(ReceiveAck), nameof(ReceiveAckConcurrent), nameof(ChannelRead)])]
    public void SetupFull() => Open(prefill: Messages);

    [IterationCleanup]
    public void Cleanup() => _queue.DisposeAsync().AsTask().GetAwaiter().GetResult();

    private void Open(int prefill)
    {
        _queue = MiniQueueEngine.OpenAsync(new MiniQueueOptions()).AsTask().GetAwaiter().GetResult();
        _channel = Channel.CreateUnbounded<byte[]>();
        for (var i = 0; i < prefill; i++)
        {
            _queue.PublishAsync("bench", _payload).AsTask().GetAwaiter().GetResult();
            _channel.Writer.TryWrite(_payload.ToArray());
        }
    }

    [BenchmarkCategory("publish")]
    [Benchmark(Baseline = true, OperationsPerInvoke = Messages, Description = "channel: copy + write")]
    public void ChannelWrite()
    {
        var writer = _channel.Writer;
        for (var i = 0; i < Messages; i++)
        {
            writer.TryWrite(_payload.ToArray());
        }
    }

    [BenchmarkCategory("publish")]
    [Benchmark(OperationsPerInvoke = Messages, Description = "engine: publish")]
    public async Task Publish()
    {
        for (var i = 0; i < Messages; i++)
        {
            await _queue.PublishAsync("bench", _payload);
        }
    }

    [BenchmarkCategory("publish")]
    [Benchmark(OperationsPerInvoke = Messages, Description = "engine: publish, 2 threads")]
    public Task PublishConcurrent() => Task.WhenAll(
        Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
        {
            for (var i = 0; i < Messages / 2; i++)
            {
                await _queue.PublishAsync("bench", _payload);
            }
        })));

    [BenchmarkCategory("steady")]
    [Benchmark(Baseline = true, OperationsPerInvoke = Messages, Description = "channel: copy + write + read")]
    public async Task ChannelRoundTrip()
    {
        for (var i = 0; i < Messages; i++)
        {
            _channel.Writer.TryWrite(_payload.ToArray());
            await _channel.Reader.ReadAsync();
        }
    }

    /// <summary>The steady state: the queue stays short, so the only allocation left is the payload copy.</summary>
    [BenchmarkCategory("steady")]
    [Benchmark(OperationsPerInvoke = Messages, Description = "engine: publish + receive + ACK")]
    public async Task PublishReceiveAck()
    {
        await using var consumer = _queue.Subscribe("bench");
        for (var i = 0; i < Messages; i++)
        {
            await _queue.PublishAsync("bench", _payload);
            await consumer.ReceiveAsync();
            await consumer.AckAsync();
        }
    }

    [BenchmarkCategory("receive")]
    [Benchmark(Baseline = true, OperationsPerInvoke = Messages, Description = "channel: read")]
    public async Task ChannelRead()
    {
        var reader = _channel.Reader;
        for (var i = 0; i < Messages; i++)
        {
            await reader.ReadAsync();
        }
    }

    [BenchmarkCategory("receive")]
    [Benchmark(OperationsPerInvoke = Messages, Description = "engine: receive+ACK")]
    public async Task ReceiveAck()
    {
        await using var consumer = _queue.Subscribe("bench");
        for (var i = 0; i < Messages; i++)
        {
            await consumer.ReceiveAsync();
            await consumer.AckAsync();
        }
    }

    [BenchmarkCategory("receive")]
    [Benchmark(OperationsPerInvoke = Messages, Description = "engine: receive+ACK, 2 consumers")]
    public Task ReceiveAckConcurrent() => Task.WhenAll(
        Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
        {
            await using var consumer = _queue.Subscribe("bench");
            for (var i = 0; i < Messages / 2; i++)
            {
                await consumer.ReceiveAsync();
                await consumer.AckAsync();
            }
        })));
}
