using MiniQueue.HttpBench;

return args.FirstOrDefault() switch
{
    "serve" => await BenchServer.RunAsync(args[1..]),
    "consume" => await ConsumeLoad.RunAsync(args[1..]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("""
        usage:
          MiniQueue.HttpBench serve --mode miniqueue|bare --port N [--prefill N --size B --topic T]
          MiniQueue.HttpBench consume --url https://127.0.0.1:N --streams S --connections C --seconds D [--warmup W --topic T]
        """);
    return 2;
}
