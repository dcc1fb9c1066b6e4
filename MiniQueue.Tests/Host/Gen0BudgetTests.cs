using System.Collections;
using System.Net.Sockets;
using System.Text;
using MiniQueue.Host;
using MiniQueue.Tests.Storage;

namespace MiniQueue.Tests.Host;

/// <summary>
/// The host's small gen0 budget: a real host process starts again with <c>DOTNET_GCgen0size</c> in its environment,
/// keeping its process id, its arguments and its shutdown; one given in the environment is kept.
/// </summary>
[CancelAfter(120_000)]
public sealed class Gen0BudgetTests
{
    [Test]
    public async Task TheHost_RunsWithTheSmallGen0Budget_AsTheSameProcess_WithTheSameArguments_AndStopsCleanly()
    {
        SkipUnlessLinux();
        using var directory = new TempDirectory();
        await using var host = HostProcess.Start(directory.Path, "-db", "data", "-level", "info");
        await host.WaitUntilReadyAsync();

        if (HostProcess.IsNativeAot)
        {
            // The budget is compiled into a Native AOT executable (and it has no diagnostics socket): it starts once.
            Assert.That(EnvironmentOf(host.ProcessId), Has.None.StartsWith($"{Gen0Budget.Variable}="));
        }
        else
        {
            Assert.That(EnvironmentOf(host.ProcessId), Does.Contain($"{Gen0Budget.Variable}={Gen0Budget.Value}"));
        }

        var arguments = CommandLineOf(host.ProcessId);
        if (Environment.GetEnvironmentVariable("MINIQUEUE_HOST_EXECUTABLE") is null)
        {
            Assert.That(arguments, Does.Contain(HostProcess.HostAssembly));
        }

        Assert.That(arguments[^6..], Is.EqualTo(new[] { "-db", "data", "-level", "info", "-port", host.Port.ToString(System.Globalization.CultureInfo.InvariantCulture) }));

        // The diagnostics tools (dotnet-counters, dotnet-trace) still reach the host: its runtime listens on its socket.
        if (!HostProcess.IsNativeAot)
        {
            var diagnostics = Directory.GetFiles(Path.GetTempPath(), $"dotnet-diagnostic-{host.ProcessId}-*-socket");
            Assert.That(diagnostics, Has.Length.EqualTo(1));
            using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            Assert.DoesNotThrowAsync(async () => await socket.ConnectAsync(new UnixDomainSocketEndPoint(diagnostics[0])));
        }

        using var client = host.CreateHttpClient(host.GeneratedCertificate());
        using (var published = await client.PostAsync("publish/budget", new ByteArrayContent("kept"u8.ToArray())))
        {
            Assert.That(published.IsSuccessStatusCode, Is.True);
        }

        host.Terminate();
        Assert.That(await host.WaitForExitAsync(), Is.Zero, string.Join('\n', host.StandardError));
        Assert.That(host.StandardError, Has.None.Contains("gen0 budget"), "the restart should not have failed");
    }

    [Test]
    public async Task ABudgetGivenInTheEnvironment_IsKept_AndZeroKeepsTheRuntimesOwn()
    {
        SkipUnlessLinux();
        using var directory = new TempDirectory();
        await using var host = HostProcess.Start(directory.Path, new Dictionary<string, string> { [Gen0Budget.Variable] = "0" }, "-db", "data");
        await host.WaitUntilReadyAsync();

        var environment = EnvironmentOf(host.ProcessId);
        Assert.That(environment, Does.Contain($"{Gen0Budget.Variable}=0"));
        Assert.That(environment, Does.Not.Contain($"{Gen0Budget.Variable}={Gen0Budget.Value}"));
    }

    [Test]
    public void AHostLoadedByAnotherProgram_NeverStartsAgain()
    {
        // This test runner is such a program: starting it again would replace the test run.
        Assert.That(Gen0Budget.ShouldReexecute(new Hashtable()), Is.False);
    }

    [Test]
    public void TheCommandLine_SplitsAtEveryNul_KeepingEmptyArgumentsAndSpaces()
    {
        var arguments = Gen0Budget.SplitCommandLine("dotnet\0MiniQueue.Host.dll\0-db\0my data\0\0-port\0"u8);

        Assert.That(arguments, Is.EqualTo(new[] { "dotnet", "MiniQueue.Host.dll", "-db", "my data", "", "-port" }));
        Assert.That(Gen0Budget.SplitCommandLine(Encoding.UTF8.GetBytes("données\0")), Is.EqualTo(new[] { "données" }));
    }

    private static void SkipUnlessLinux()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Ignore("The host starts again with a gen0 budget only on Linux (execve of /proc/self/exe).");
        }
    }

    // /proc/PID/environ is NUL-terminated entries, as cmdline is.
    private static string[] EnvironmentOf(int processId) =>
        Gen0Budget.SplitCommandLine(File.ReadAllBytes($"/proc/{processId}/environ"));

    private static string[] CommandLineOf(int processId) =>
        Gen0Budget.SplitCommandLine(File.ReadAllBytes($"/proc/{processId}/cmdline"));
}
