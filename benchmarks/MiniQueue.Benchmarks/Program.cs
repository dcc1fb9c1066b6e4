using BenchmarkDotNet.Running;
using MiniQueue.Benchmarks;

// `durable`, `recovery` and `memory` are load runs of the durable engine (docs/benchmarks.md, "The durable store");
// anything else goes to BenchmarkDotNet (e.g. --filter '*InMemory*').
return args.FirstOrDefault() switch
{
    "durable" => await DurableLoad.RunAsync(args[1..]),
    "recovery" => await RecoveryTime.RunAsync(args[1..]),
    "memory" => await QueuedMemory.RunAsync(args[1..]),
    _ => RunBenchmarkDotNet(args),
};

static int RunBenchmarkDotNet(string[] args)
{
    BenchmarkSwitcher.FromAssembly(typeof(InMemoryBenchmarks).Assembly).Run(args);
    return 0;
}
