using System.Collections;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace MiniQueue.Host;

/// <summary>
/// Gives the host a small gen0 budget (<see cref="Value"/>) on Linux: at start, a host whose environment does not name
/// <c>DOTNET_GCgen0size</c> executes itself again (<c>execve</c> of <c>/proc/self/exe</c>: the same process id, the
/// same arguments) with it added.
/// </summary>
/// <remarks>
/// Workstation GC sizes gen0's budget from the CPU's last-level cache and keeps that much committed: on a 105 MiB-L3
/// Xeon about 55 MB of the host's memory under a publish load was gen0 alone. CoreCLR reads the setting only from the
/// environment (<c>runtimeconfig.json</c> cannot carry it), hence the second start, which costs one runtime start
/// (tens of milliseconds) before the host does anything. Native AOT has the value compiled in and never re-executes.
/// Any <c>DOTNET_GCgen0size</c> in the environment wins, and <c>DOTNET_GCgen0size=0</c> keeps the runtime's own
/// budget. If the second start cannot be made, the host says so and runs with the runtime's budget.
/// </remarks>
internal static partial class Gen0Budget
{
    /// <summary>The variable CoreCLR reads the gen0 budget from.</summary>
    public const string Variable = "DOTNET_GCgen0size";

    /// <summary>4 MiB, in the runtime's hexadecimal.</summary>
    public const string Value = "0x400000";

    /// <summary>
    /// Executes the host again with <see cref="Variable"/> set, when it should; returns only when it did not (or could
    /// not: then <paramref name="error"/> says why).
    /// </summary>
    public static void ApplyOrReexecute(TextWriter error)
    {
        var environment = Environment.GetEnvironmentVariables();
        if (!ShouldReexecute(environment))
        {
            return;
        }

        string[] arguments;
        try
        {
            arguments = SplitCommandLine(File.ReadAllBytes("/proc/self/cmdline"));
        }
        catch (IOException e)
        {
            error.WriteLine($"miniqueue: kept the runtime's gen0 budget: cannot read /proc/self/cmdline ({e.Message})");
            return;
        }

        if (arguments.Length == 0)
        {
            return;
        }

        var variables = new List<string?>(environment.Count + 2);
        foreach (DictionaryEntry variable in environment)
        {
            variables.Add($"{variable.Key}={variable.Value}");
        }

        variables.Add($"{Variable}={Value}");
        variables.Add(null);
        RemoveDiagnosticsSocket();
        _ = Execve("/proc/self/exe", [.. arguments, null], [.. variables]);
        // Only a failed execve returns.
        error.WriteLine($"miniqueue: kept the runtime's gen0 budget: execve failed (errno {Marshal.GetLastPInvokeError()})");
    }

    /// <summary>
    /// Whether this process should start again with <see cref="Variable"/>: on Linux, in the JIT-compiled host run as a
    /// program (not loaded by a test host or another application), with neither <see cref="Variable"/> nor its
    /// <c>COMPlus_</c> spelling in <paramref name="environment"/>.
    /// </summary>
    internal static bool ShouldReexecute(IDictionary environment) =>
        OperatingSystem.IsLinux()
        && RuntimeFeature.IsDynamicCodeSupported
        && Assembly.GetEntryAssembly() == typeof(Gen0Budget).Assembly
        && !environment.Contains(Variable)
        && !environment.Contains("COMPlus_GCgen0size");

    /// <summary>
    /// Removes the runtime's diagnostics socket (<c>dotnet-diagnostic-PID-KEY-socket</c> in the temporary folder), which
    /// the runtime started again makes under the same name: left in place, it stops that runtime from listening, and
    /// <c>dotnet-counters</c>, <c>dotnet-trace</c> and <c>dotnet-dump</c> could not reach the host. The socket this
    /// runtime listens on stays open until the <c>execve</c> closes it.
    /// </summary>
    private static void RemoveDiagnosticsSocket()
    {
        try
        {
            foreach (var socket in Directory.EnumerateFiles(Path.GetTempPath(), $"dotnet-diagnostic-{Environment.ProcessId}-*-socket"))
            {
                File.Delete(socket);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The tools will not reach this host; it runs as well without them.
        }
    }

    /// <summary>The arguments in <c>/proc/self/cmdline</c>'s form: each ends with a NUL byte.</summary>
    internal static string[] SplitCommandLine(ReadOnlySpan<byte> commandLine)
    {
        var arguments = new List<string>();
        while (!commandLine.IsEmpty)
        {
            var end = commandLine.IndexOf((byte)0);
            if (end < 0)
            {
                end = commandLine.Length;
            }

            arguments.Add(Encoding.UTF8.GetString(commandLine[..end]));
            commandLine = commandLine[Math.Min(end + 1, commandLine.Length)..];
        }

        return [.. arguments];
    }

    [LibraryImport("libc", EntryPoint = "execve", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Execve(string path, string?[] arguments, string?[] environment);
}
