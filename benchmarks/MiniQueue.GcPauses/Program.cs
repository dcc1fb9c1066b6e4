using System.Globalization;
using Microsoft.Diagnostics.Tracing;

// A GC pause is the time from the runtime starting to suspend the managed threads (GCSuspendEEStart) to its letting
// them run again (GCRestartEEStop): what every request in flight waits for.
if (args.Length != 1)
{
    Console.Error.WriteLine("usage: MiniQueue.GcPauses TRACE.nettrace");
    return 2;
}

var pauses = new List<(double At, double Milliseconds, int Generation)>();
double suspendedAt = -1;
var generation = -1;
using (var source = new EventPipeEventSource(args[0]))
{
    source.Clr.GCStart += e => generation = e.Depth;
    source.Clr.GCSuspendEEStart += e => suspendedAt = e.TimeStampRelativeMSec;
    source.Clr.GCRestartEEStop += e =>
    {
        if (suspendedAt >= 0)
        {
            pauses.Add((suspendedAt, e.TimeStampRelativeMSec - suspendedAt, generation));
            suspendedAt = -1;
        }
    };
    source.Process();
}

var invariant = CultureInfo.InvariantCulture;
Console.WriteLine(string.Create(invariant, $"GC pauses: {pauses.Count}, total {pauses.Sum(p => p.Milliseconds):F0} ms, longest {(pauses.Count == 0 ? 0 : pauses.Max(p => p.Milliseconds)):F1} ms"));
foreach (var (at, milliseconds, gen) in pauses.OrderByDescending(p => p.Milliseconds).Take(5))
{
    Console.WriteLine(string.Create(invariant, $"  {milliseconds,6:F1} ms at {at / 1000,7:F1} s (gen{gen})"));
}

return 0;
