using MiniQueue.HttpBench;

return args.FirstOrDefault() switch
{
    "serve" => await BenchServer.RunAsync(args[1..]),
    "consume" => await ConsumeLoad.RunAsync(args[1..]),
    "publish" => await PublishLoad.RunAsync(args[1..]),
    "handoff" => await HandOffLoad.RunAsync(args[1..]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("""
        usage:
          MiniQueue.HttpBench serve --mode miniqueue|bare|bare-fsync|bare-faster --port N [--cert PEM --key PEM | --cert-out FILE] [--db FILE] [--prefill N --size B --topic T --drain T]
          MiniQueue.HttpBench consume --url https://127.0.0.1:N --trust FILE --streams S --connections C --seconds D [--warmup W --topic T --name X --max-messages N]
          MiniQueue.HttpBench publish --url https://127.0.0.1:N --trust FILE --connections C --streams M --seconds D [--warmup W --size B --topic T --name X --rate R]
          MiniQueue.HttpBench handoff --publish-url https://127.0.0.1:N --consume-url https://127.0.0.1:M --trust FILE [--count N --warmup W --topic T]
        """);
    return 2;
}
