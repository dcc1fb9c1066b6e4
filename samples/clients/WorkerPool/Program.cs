using System.Diagnostics;
using System.Text;
using MiniQueue.Client;
using MiniQueue.Samples;

// WorkerPool: competing consumers (the counterpart of the Go miniqueue's examples/workers). Each worker has its own
// subscription, so it holds one job at a time; the server hands each job to exactly one worker, and a busy worker
// gets no more until it ACKs. A worker stopped mid-job would leave the job to the others: whatever a consumer
// holds when its stream ends goes back to the front of the topic.
const string Usage = """
    Usage: WorkerPool [options]

    Runs N workers on a topic; each receives a job, works on it for a while (simulated) and ACKs it. Prints each
    job and, at the end, how many jobs each worker did. Stops after --count jobs in all, or on Ctrl+C (workers
    finish the job in hand first).

    Options:
      --topic NAME     the topic (default jobs)
      --workers N      how many workers (default 4)
      --count N        stop after N jobs in all; 0 runs until Ctrl+C (default 0)
      --publish N      first publish N jobs "job 1" .. "job N" (default 0)
      --work-ms N      each job takes N ms of simulated work, give or take half (default 200)

    """ + Example.CommonUsage;

return await Example.RunAsync(args, Usage, options: ["workers", "count", "publish", "work-ms"], flags: [], async (command, cancellationToken) =>
{
    var topic = command.Get("topic", "jobs");
    var workers = command.GetInt("workers", 4, minimum: 1);
    var count = command.GetInt("count", 0, minimum: 0);
    var publish = command.GetInt("publish", 0, minimum: 0);
    var workMs = command.GetInt("work-ms", 200, minimum: 0);
    using var client = Example.CreateClient(command);

    for (var i = 1; i <= publish; i++)
    {
        await client.PublishAsync(topic, Encoding.UTF8.GetBytes($"job {i}"), cancellationToken);
    }

    if (publish > 0)
    {
        Console.WriteLine($"published {publish} jobs to {topic}");
    }

    // Ctrl+C, or the last of --count jobs done, stops the workers that are waiting for a job.
    using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
    var claimed = 0;
    var finished = 0;
    var done = new int[workers];
    var clock = Stopwatch.StartNew();

    async Task WorkAsync(int worker)
    {
        try
        {
            var subscription = await client.SubscribeAsync(topic, stop.Token);
            try
            {
                // With --count, a worker claims a job before it asks for one, so that no more than --count are taken.
                while (!stop.IsCancellationRequested && (count == 0 || Interlocked.Increment(ref claimed) <= count))
                {
                    MiniQueueMessage job = await subscription.ReceiveAsync(stop.Token);

                    // The work is not cancelled: a job in hand is finished and ACKed even when stopping.
                    var work = TimeSpan.FromMilliseconds(Random.Shared.Next(workMs / 2, (workMs * 3 / 2) + 1));
                    await Task.Delay(work, CancellationToken.None);
                    await subscription.AckAsync(CancellationToken.None);

                    done[worker]++;
                    Console.WriteLine($"worker {worker + 1}: {Encoding.UTF8.GetString(job.Body.Span)} ({work.TotalMilliseconds:0} ms)");
                    if (Interlocked.Increment(ref finished) == count)
                    {
                        await stop.CancelAsync();
                    }
                }
            }
            finally
            {
                await subscription.DisposeAsync();
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Stopped while waiting for a job: nothing is held, nothing is lost.
        }
        catch
        {
            // A failed worker (the server went away) stops the others too; the error is reported once they end.
            await stop.CancelAsync();
            throw;
        }
    }

    await Task.WhenAll(Enumerable.Range(0, workers).Select(worker => Task.Run(() => WorkAsync(worker), CancellationToken.None)));

    Console.WriteLine($"done: {finished} jobs in {clock.Elapsed.TotalSeconds:0.00} s");
    for (var worker = 0; worker < workers; worker++)
    {
        Console.WriteLine($"  worker {worker + 1}: {done[worker]} jobs");
    }

    return 0;
});
