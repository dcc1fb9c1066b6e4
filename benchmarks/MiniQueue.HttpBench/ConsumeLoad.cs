namespace MiniQueue.HttpBench;

internal static class ConsumeLoad
{
    public static Task<int> RunAsync(string[] args) => Task.FromResult(0);
}
