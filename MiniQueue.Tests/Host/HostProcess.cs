using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography.X509Certificates;
using MiniQueue.Client;

namespace MiniQueue.Tests.Host;

/// <summary>
/// The standalone host as a real child process (<c>dotnet MiniQueue.Host.dll</c>) on a free loopback port, in a
/// working folder of its own, with its stdout and stderr captured.
/// </summary>
internal sealed partial class HostProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly List<string> _stderr = [];
    private readonly List<string> _stdout = [];
    private readonly Task _readers;

    private HostProcess(Process process, string workingDirectory, int port)
    {
        _process = process;
        WorkingDirectory = workingDirectory;
        Port = port;
        _readers = Task.WhenAll(Pump(process.StandardError, _stderr), Pump(process.StandardOutput, _stdout));
    }

    public string WorkingDirectory { get; }

    public int Port { get; }

    /// <summary>The <c>-db</c> flag it was started with, if any.</summary>
    public string? DataDirectory { get; private init; }

    public Uri BaseAddress => new($"https://localhost:{Port}/");

    public bool HasExited => _process.HasExited;

    /// <summary>Its process id (the host's own, not a launcher's: <c>env</c> and the host's restart both keep it).</summary>
    public int ProcessId => _process.Id;

    public string[] StandardError
    {
        get
        {
            lock (_stderr)
            {
                return [.. _stderr];
            }
        }
    }

    public static string HostAssembly => Path.Combine(AppContext.BaseDirectory, "MiniQueue.Host.dll");

    /// <summary>
    /// Whether the tests run against a Native AOT executable (<c>MINIQUEUE_HOST_EXECUTABLE</c>): its ELF file has the
    /// section of ahead-of-time compiled managed code, <c>__managedcode</c>, which no CoreCLR host has.
    /// </summary>
    public static bool IsNativeAot { get; } = Environment.GetEnvironmentVariable("MINIQUEUE_HOST_EXECUTABLE") is { } path
        && File.ReadAllBytes(path).AsSpan().IndexOf("__managedcode\0"u8) >= 0;

    /// <summary>A port nobody listens on now (the host binds it a moment later).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Starts the host with <paramref name="arguments"/> (a free port is added unless one is given) in <paramref name="workingDirectory"/>.</summary>
    public static HostProcess Start(string workingDirectory, params string[] arguments) => Start(workingDirectory, null, arguments);

    /// <summary>Starts the host as <see cref="Start(string, string[])"/> does, with <paramref name="environment"/> added to its environment.</summary>
    public static HostProcess Start(string workingDirectory, IReadOnlyDictionary<string, string>? environment, params string[] arguments)
    {
        var given = GivenPort(arguments);
        var port = given ?? FreePort();
        // MINIQUEUE_HOST_EXECUTABLE runs these tests against a published binary (the single file) instead.
        var executable = Environment.GetEnvironmentVariable("MINIQUEUE_HOST_EXECUTABLE");
        var program = executable ?? DotnetHost();
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        if (IsInterruptIgnored() && File.Exists("/usr/bin/env"))
        {
            // A process started with SIGINT ignored (a background job of a non-interactive shell, as CI may be) passes
            // that on, and .NET then never sees Ctrl+C: start the host with SIGINT at its default, as a terminal would.
            start.FileName = "/usr/bin/env";
            start.ArgumentList.Add("--default-signal=INT");
            start.ArgumentList.Add(program);
        }

        if (executable is null)
        {
            start.ArgumentList.Add(HostAssembly);
        }

        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        if (given is null && !arguments.Any(IsPortFlag))
        {
            start.ArgumentList.Add("-port");
            start.ArgumentList.Add(port.ToString(CultureInfo.InvariantCulture));
        }

        var db = Array.FindIndex(arguments, argument => argument is "-db" or "--db");
        return new HostProcess(Process.Start(start)!, workingDirectory, port)
        {
            DataDirectory = db >= 0 && db + 1 < arguments.Length ? arguments[db + 1] : null,
        };
    }

    private static bool IsPortFlag(string argument) => argument.TrimStart('-').Split('=')[0] == "port" && argument.StartsWith('-');

    /// <summary>The port in a <c>-port</c> flag of any Go style, if it has a number.</summary>
    private static int? GivenPort(string[] arguments)
    {
        for (var i = 0; i < arguments.Length; i++)
        {
            if (!IsPortFlag(arguments[i]))
            {
                continue;
            }

            var value = arguments[i].Contains('=', StringComparison.Ordinal) ? arguments[i].Split('=', 2)[1] : i + 1 < arguments.Length ? arguments[i + 1] : "";
            return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var port) ? port : null;
        }

        return null;
    }

    /// <summary>Runs the host to its end (for flags that make it exit) and returns its exit code and stderr.</summary>
    public static async Task<(int ExitCode, string Error)> RunToExitAsync(string workingDirectory, params string[] arguments)
    {
        await using var host = Start(workingDirectory, arguments);
        var exitCode = await host.WaitForExitAsync();
        return (exitCode, string.Join('\n', host.StandardError));
    }

    public static string DotnetHost() =>
        Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";

    /// <summary>The self-signed certificate the host made in its data directory.</summary>
    public X509Certificate2 GeneratedCertificate(string dataDirectory = "data") =>
        X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(WorkingDirectory, dataDirectory, "tls", "localhost.pem")));

    /// <summary>A server certificate check that accepts exactly <paramref name="certificate"/>.</summary>
    public static System.Net.Security.RemoteCertificateValidationCallback Trusting(X509Certificate2 certificate) =>
        (_, presented, _, _) => presented is not null && presented.GetCertHashString() == certificate.GetCertHashString();

    /// <summary>An HTTP/2 client that trusts exactly <paramref name="certificate"/>.</summary>
    public HttpClient CreateHttpClient(X509Certificate2 certificate) =>
        new(new SocketsHttpHandler { SslOptions = { RemoteCertificateValidationCallback = Trusting(certificate) } })
        {
            BaseAddress = BaseAddress,
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TestSupport.Bound,
        };

    public MiniQueueClient CreateClient(X509Certificate2 certificate) => new(new MiniQueueClientOptions
    {
        BaseAddress = BaseAddress,
        ServerCertificateValidation = Trusting(certificate),
        RequestTimeout = TestSupport.Bound,
    });

    /// <summary>Waits until the host answers <c>/healthz</c> (with its generated certificate, unless another is given).</summary>
    public async Task WaitUntilReadyAsync(X509Certificate2? certificate = null, string dataDirectory = "data")
    {
        var deadline = DateTime.UtcNow + TestSupport.Bound;
        while (true)
        {
            if (_process.HasExited)
            {
                Assert.Fail($"the host exited with {_process.ExitCode}:\n{string.Join('\n', StandardError)}");
            }

            try
            {
                var trusted = certificate ?? GeneratedCertificate(dataDirectory);
                using var client = CreateHttpClient(trusted);
                using var response = await client.GetAsync("healthz");
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (Exception exception) when (exception is HttpRequestException or IOException or TaskCanceledException or System.Security.Cryptography.CryptographicException)
            {
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"the host did not become ready:\n{string.Join('\n', StandardError)}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>Whether this process ignores SIGINT (bit 2 of SigIgn in /proc/self/status); children inherit that.</summary>
    public static bool IsInterruptIgnored()
    {
        const string Status = "/proc/self/status";
        var ignored = File.Exists(Status) ? File.ReadLines(Status).FirstOrDefault(line => line.StartsWith("SigIgn:", StringComparison.Ordinal)) : null;
        return ignored is not null
            && (ulong.Parse(ignored["SigIgn:".Length..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture) & (1UL << (2 - 1))) != 0;
    }

    /// <summary>Sends SIGTERM, as a service manager does to stop it.</summary>
    public void Terminate() => Signal(15);

    /// <summary>Sends SIGINT, as Ctrl+C does.</summary>
    public void Interrupt() => Signal(2);

    /// <summary>SIGKILL: the host gets no chance to commit, close or say goodbye; waits until it is gone.</summary>
    public async Task KillAsync()
    {
        Signal(9);
        await _process.WaitForExitAsync().WaitAsync(TestSupport.Bound);
    }

    public async Task<int> WaitForExitAsync()
    {
        await _process.WaitForExitAsync().WaitAsync(TestSupport.Bound);
        await _readers.WaitAsync(TestSupport.Bound);
        return _process.ExitCode;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(TestSupport.Bound);
        }

        _process.Dispose();
    }

    private void Signal(int signal)
    {
        if (Kill(_process.Id, signal) != 0)
        {
            throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed: {Marshal.GetLastPInvokeErrorMessage()}");
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    private static async Task Pump(StreamReader reader, List<string> lines)
    {
        while (await reader.ReadLineAsync() is { } line)
        {
            lock (lines)
            {
                lines.Add(line);
            }
        }
    }
}
