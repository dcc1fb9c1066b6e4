using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace MiniQueue.Tests.PostgreSql;

/// <summary>
/// A throwaway PostgreSQL cluster from the machine's own binaries (Debian's <c>postgresql</c> package): initdb in a temp
/// folder, its own port and socket folder, run as the <c>postgres</c> user when the tests run as root. One cluster serves
/// the whole test run (started on first use, stopped by <see cref="PostgreSqlClusterTeardown"/>); each test gets its own
/// database from <see cref="CreateDatabaseAsync"/>.
/// </summary>
internal sealed class PostgreSqlCluster
{
    private static readonly Lazy<Task<PostgreSqlCluster>> s_shared = new(StartAsync);
    private static int s_databases;

    private readonly string _bin;
    private readonly string _folder;

    private PostgreSqlCluster(string bin, string folder, int port)
    {
        _bin = bin;
        _folder = folder;
        Port = port;
    }

    public int Port { get; }

    public string SocketFolder => Path.Combine(_folder, "socket");

    private string DataFolder => Path.Combine(_folder, "data");

    /// <summary>The connection string of <paramref name="database"/> on this cluster.</summary>
    public string ConnectionString(string database = "postgres") => new NpgsqlConnectionStringBuilder
    {
        Host = "127.0.0.1",
        Port = Port,
        Username = "postgres",
        Database = database,
        MaxPoolSize = 40,
        Timeout = 5,
        CommandTimeout = 30,
    }.ConnectionString;

    /// <summary>The run's cluster; the test is ignored, with the reason, when PostgreSQL's binaries are missing.</summary>
    public static async Task<PostgreSqlCluster> SharedAsync()
    {
        if (FindBinaries() is null)
        {
            Assert.Ignore("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql. .ci/run installs them.");
        }

        return await s_shared.Value.ConfigureAwait(false);
    }

    /// <summary>Whether the run started a cluster (to stop it at the end).</summary>
    public static bool Started => s_shared.IsValueCreated && s_shared.Value.IsCompletedSuccessfully;

    public static PostgreSqlCluster Current => s_shared.Value.Result;

    /// <summary>A new, empty database on the cluster; returns its connection string.</summary>
    public async Task<string> CreateDatabaseAsync()
    {
        var name = $"t{Environment.ProcessId}_{Interlocked.Increment(ref s_databases)}";
        // Not pooled: a pooled connection would be broken after a test restarted the server.
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(ConnectionString()) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"CREATE DATABASE {name}", connection);
        await command.ExecuteNonQueryAsync();
        return ConnectionString(name);
    }

    private static string? FindBinaries() =>
        Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql")
                .Select(version => Path.Combine(version, "bin"))
                .Where(bin => File.Exists(Path.Combine(bin, "initdb")) && File.Exists(Path.Combine(bin, "pg_ctl")))
                .OrderByDescending(bin => bin, StringComparer.Ordinal)
                .FirstOrDefault()
            : null;

    private static bool IsRoot => Environment.UserName == "root";

    private static async Task<PostgreSqlCluster> StartAsync()
    {
        var bin = FindBinaries()!;
        var folder = Directory.CreateTempSubdirectory("miniqueue-pg-").FullName;
        Directory.CreateDirectory(Path.Combine(folder, "socket"));
        var cluster = new PostgreSqlCluster(bin, folder, FreePort());
        if (IsRoot)
        {
            // initdb refuses to run as root: the cluster belongs to the postgres user.
            await RunAsync("chown", ["-R", "postgres:postgres", folder]);
            await RunAsync("chmod", ["755", folder]);
        }

        await cluster.PgAsync("initdb", ["-D", cluster.DataFolder, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        await cluster.StartServerAsync();
        return cluster;
    }

    /// <summary>Starts the server (again, after <see cref="StopServerAsync"/>).</summary>
    public Task StartServerAsync() => PgAsync("pg_ctl", [
        "-D", DataFolder, "-l", Path.Combine(_folder, "server.log"), "-w", "-t", "60",
        "-o", $"-p {Port} -k {SocketFolder} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off -c shared_buffers=64MB",
        "start"]);

    /// <summary>Stops the server; <c>immediate</c> is a crash (no checkpoint, open transactions lost).</summary>
    public Task StopServerAsync(string mode = "fast") => PgAsync("pg_ctl", ["-D", DataFolder, "-m", mode, "-w", "stop"]);

    /// <summary>
    /// Stops the server (<paramref name="mode"/> as <see cref="StopServerAsync"/>), runs <paramref name="meanwhile"/>, and
    /// starts it again whatever <paramref name="meanwhile"/> did.
    /// </summary>
    public async Task WhileStoppedAsync(string mode, Func<Task> meanwhile)
    {
        await StopServerAsync(mode);
        try
        {
            await meanwhile();
        }
        finally
        {
            await StartServerAsync();
        }
    }

    /// <summary>Stops the server and deletes the cluster's folder.</summary>
    public async Task DestroyAsync()
    {
        try
        {
            await StopServerAsync("immediate");
        }
        finally
        {
            Directory.Delete(_folder, recursive: true);
        }
    }

    private Task PgAsync(string program, string[] arguments) =>
        IsRoot
            ? RunAsync("runuser", ["-u", "postgres", "--", Path.Combine(_bin, program), .. arguments])
            : RunAsync(Path.Combine(_bin, program), arguments);

    private static async Task RunAsync(string program, string[] arguments)
    {
        var start = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = "/",
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} exited with {process.ExitCode}: {await output}{await error}");
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
