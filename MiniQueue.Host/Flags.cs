using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;

namespace MiniQueue.Host;

/// <summary>
/// The command line, parsed the way Go's <c>flag</c> package parses the original's: one dash or two, <c>-flag value</c>
/// or <c>-flag=value</c>, booleans as <c>-flag</c> or <c>-flag=false</c>, <c>--</c> ends the flags, <c>-h</c> and
/// <c>-help</c> print the usage. Errors and the usage text follow Go's wording.
/// </summary>
internal sealed class Flags
{
    public const string DefaultCert = "./testdata/localhost.pem";
    public const string DefaultKey = "./testdata/localhost-key.pem";

    private readonly List<Definition> _definitions;

    private Flags()
    {
        _definitions =
        [
            new("addr", "string", "address to listen on; empty listens on every interface", "", v => Address = v),
            new("auth", "string", "access file: bearer tokens (as SHA-256 hashes) and client certificate names, and what each may do on which topics; every request but /healthz then needs one (see docs/security.md)", "", v => Auth = v.Length > 0 ? v : null),
            new("cert", "string", "path to TLS certificate", DefaultCert, v => { Cert = v; CertGiven = true; }),
            new("client-ca", "string", "require TLS client certificates to chain to this CA (PEM); the certificate's common name is an identity of -auth", "", v => ClientCa = v.Length > 0 ? v : null),
            new("commit", "string", "when a publish is acknowledged: fsync (after it is synced to disk) or interval (at once, synced within -commit-interval)", "fsync", v => Commit = ParseCommit(v)),
            new("commit-interval", "duration", "with -commit interval, the longest a publish waits to be synced", "10ms", v => CommitInterval = ParsePositiveDuration(v)),
            new("db", "string", "path to the data directory", "./data", v => DataDirectory = v),
            new("disk-reserve", "size", "free disk space publishes leave for the store's own writes; under it they are refused with 503 (e.g. 64MiB; default: 4 log pages, 32MiB)", "", v => DiskReserve = ParseSize(v)),
            new("h2c", "bool", "serve cleartext HTTP/2 (prior knowledge) instead of TLS, e.g. behind a proxy that terminates TLS", "false", v => H2c = ParseBool(v)),
            new("handshake-timeout", "duration", "the longest a TLS handshake may take before the connection is closed", "10s", v => HandshakeTimeout = ParsePositiveDuration(v)),
            new("human", "bool", "human readable logging output", "false", v => Human = ParseBool(v)),
            new("idle-timeout", "duration", "how long a connection with no request under way is kept open", "2m10s", v => IdleTimeout = ParsePositiveDuration(v)),
            new("key", "string", "path to TLS key", DefaultKey, v => { Key = v; KeyGiven = true; }),
            new("lease", "duration", "how long a consumer may hold a message before it returns to the front (TOUCH renews it; e.g. 30s; default: no lease)", "", v => Lease = ParsePositiveDuration(v)),
            new("level", "string", "(disabled|debug|info|warn|error)", "debug", v => Level = ParseLevel(v)),
            new("max-connections", "int", "the most connections served at once; more wait in the listen queue", "10000", v => MaxConnections = ParseInt(v, minimum: 1)),
            new("max-consumers", "int", "the most consumer streams one topic may have at once; more are answered 429", "10000", v => MaxConsumers = ParseInt(v, minimum: 1)),
            new("max-deliveries", "int", "how many times a message is delivered at most; then it moves to the topic <topic>.dead (default: no limit)", "", v => MaxDeliveries = ParseInt(v, minimum: 1)),
            new("max-disk", "size", "the most disk space the data directory may take (e.g. 10GiB; default: no cap)", "", v => MaxDisk = ParseSize(v)),
            new("max-header-bytes", "int", "the most bytes of request headers; a request with more is refused (431)", "32768", v => MaxHeaderBytes = ParseInt(v, minimum: 1024)),
            new("max-message-bytes", "int", "largest message body accepted, in bytes", MiniQueueOptions.DefaultMaxMessageBytes.ToString(CultureInfo.InvariantCulture), v => MaxMessageBytes = ParseInt(v, minimum: 0)),
            new("max-streams", "int", "the most HTTP/2 streams (requests and consumers) at once on one connection", "1000", v => MaxStreams = ParseInt(v, minimum: 1)),
            new("max-topics", "int", "the most topics; a publish that would create one more is answered 429", "100000", v => MaxTopics = ParseInt(v, minimum: 1)),
            new("metrics-topic-limit", "int", "how many of the busiest topics get their own topic label in /metrics; the others are summed under topic=\"/other\"", MiniQueueOptions.DefaultMetricsTopicLimit.ToString(CultureInfo.InvariantCulture), v => MetricsTopicLimit = ParseInt(v, minimum: 0)),
            new("period", "duration", "period between runs to check and restore delayed messages", "1s", v => Period = ParsePositiveDuration(v)),
            new("port", "int", "port used to run the server", "8080", v => Port = ParseInt(v, minimum: 0, maximum: 65535)),
            new("rate", "int", "the most requests a second per identity (per client address for requests without credentials), with bursts up to as many; more are answered 429 with Retry-After; 0 for no limit", "0", v => Rate = ParseInt(v, minimum: 0)),
            new("postgres", "string", "shared mode: keep the queue in this PostgreSQL database (an Npgsql connection string) instead of -db; every host on it serves one queue", "", v => Postgres = v.Length > 0 ? v : null),
        ];
    }

    public string Address { get; private set; } = "";

    public string Cert { get; private set; } = DefaultCert;

    public bool CertGiven { get; private set; }

    public string Key { get; private set; } = DefaultKey;

    public bool KeyGiven { get; private set; }

    public string DataDirectory { get; private set; } = "./data";

    /// <summary>The access file (-auth), or null: no authentication.</summary>
    public string? Auth { get; private set; }

    /// <summary>The CA client certificates must chain to (-client-ca), or null: none asked for.</summary>
    public string? ClientCa { get; private set; }

    public TimeSpan HandshakeTimeout { get; private set; } = TimeSpan.FromSeconds(10);

    public TimeSpan IdleTimeout { get; private set; } = TimeSpan.FromSeconds(130);

    public int MaxConnections { get; private set; } = 10000;

    public int MaxHeaderBytes { get; private set; } = 32768;

    public int MaxConsumers { get; private set; } = 10000;

    public int MaxTopics { get; private set; } = 100000;

    public int MaxStreams { get; private set; } = 1000;

    /// <summary>Requests a second per identity (-rate), 0 for no limit.</summary>
    public int Rate { get; private set; }

    /// <summary>Shared mode's connection string (-postgres), or null for the data directory.</summary>
    public string? Postgres { get; private set; }

    public bool Human { get; private set; }

    public LogLevel Level { get; private set; } = LogLevel.Debug;

    public TimeSpan Period { get; private set; } = TimeSpan.FromSeconds(1);

    public int Port { get; private set; } = 8080;

    public bool H2c { get; private set; }

    public int MaxMessageBytes { get; private set; } = MiniQueueOptions.DefaultMaxMessageBytes;

    /// <summary>The <c>-metrics-topic-limit</c> given, if any (otherwise the option keeps its configured value).</summary>
    public int? MetricsTopicLimit { get; private set; }

    public MiniQueueCommitMode Commit { get; private set; } = MiniQueueCommitMode.Fsync;

    public TimeSpan CommitInterval { get; private set; } = TimeSpan.FromMilliseconds(10);

    public long? DiskReserve { get; private set; }

    public long? MaxDisk { get; private set; }

    /// <summary>The <c>-lease</c> given, if any (otherwise the option keeps its configured value).</summary>
    public TimeSpan? Lease { get; private set; }

    /// <summary>The <c>-max-deliveries</c> given, if any (otherwise the option keeps its configured value).</summary>
    public int? MaxDeliveries { get; private set; }

    /// <summary>
    /// Parses <paramref name="args"/>. On <c>-h</c>, <c>-help</c> or an error it writes what Go's flag package writes to
    /// <paramref name="error"/> and returns the exit code (0 for help, 2 for an error) instead of flags.
    /// </summary>
    public static (Flags? Flags, int ExitCode) Parse(IReadOnlyList<string> args, TextWriter error)
    {
        var flags = new Flags();
        var problem = flags.TryParse(args, out var help);
        if (help)
        {
            error.Write(flags.Usage());
            return (null, 0);
        }

        if (problem is not null)
        {
            error.WriteLine(problem);
            error.Write(flags.Usage());
            return (null, 2);
        }

        return (flags, 0);
    }

    private string? TryParse(IReadOnlyList<string> args, out bool help)
    {
        help = false;
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (arg.Length < 2 || arg[0] != '-')
            {
                return $"unexpected argument: {arg} (flags start with -)";
            }

            var dashes = arg[1] == '-' ? 2 : 1;
            if (arg == "--")
            {
                return i + 1 < args.Count ? $"unexpected argument: {args[i + 1]} (flags start with -)" : null;
            }

            var name = arg[dashes..];
            if (name.Length == 0 || name[0] is '-' or '=')
            {
                return $"bad flag syntax: {arg}";
            }

            string? value = null;
            var equals = name.IndexOf('=', StringComparison.Ordinal);
            if (equals >= 0)
            {
                value = name[(equals + 1)..];
                name = name[..equals];
            }

            var definition = _definitions.Find(d => d.Name == name);
            if (definition is null)
            {
                if (name is "h" or "help")
                {
                    help = true;
                    return null;
                }

                return $"flag provided but not defined: -{name}";
            }

            if (definition.Type == "bool")
            {
                value ??= "true";
            }
            else if (value is null)
            {
                if (i + 1 >= args.Count)
                {
                    return $"flag needs an argument: -{name}";
                }

                value = args[++i];
            }

            try
            {
                definition.Set(value);
            }
            catch (FormatException exception)
            {
                return definition.Type == "bool"
                    ? $"invalid boolean value \"{value}\" for -{name}: {exception.Message}"
                    : $"invalid value \"{value}\" for flag -{name}: {exception.Message}";
            }
        }

        return null;
    }

    /// <summary>The usage block in the format of Go's flag package (flags sorted by name).</summary>
    public string Usage()
    {
        var usage = new StringBuilder("Usage of miniqueue:\n");
        foreach (var definition in _definitions.OrderBy(d => d.Name, StringComparer.Ordinal))
        {
            usage.Append("  -").Append(definition.Name);
            if (definition.Type != "bool")
            {
                usage.Append(' ').Append(definition.Type);
            }

            usage.Append("\n    \t").Append(definition.Usage);
            if (definition.Default is not ("" or "false" or "0"))
            {
                usage.Append(definition.Type == "string" ? $" (default \"{definition.Default}\")" : $" (default {definition.Default})");
            }

            usage.Append('\n');
        }

        return usage.ToString();
    }

    private static bool ParseBool(string value) => value switch
    {
        "1" or "t" or "T" or "TRUE" or "true" or "True" => true,
        "0" or "f" or "F" or "FALSE" or "false" or "False" => false,
        _ => throw new FormatException("parse error"),
    };

    private static int ParseInt(string value, int minimum, int maximum = int.MaxValue)
    {
        if (!int.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number))
        {
            throw new FormatException("parse error");
        }

        return number >= minimum && number <= maximum ? number : throw new FormatException($"out of range ({minimum}..{maximum})");
    }

    private static TimeSpan ParsePositiveDuration(string value)
    {
        var duration = GoDuration.Parse(value);
        return duration > TimeSpan.Zero ? duration : throw new FormatException("must be positive");
    }

    /// <summary>A size in bytes: digits, optionally followed by B, KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB (of 1024).</summary>
    private static long ParseSize(string value)
    {
        var digits = value.Length - value.AsSpan().TrimStart("0123456789").Length;
        if (digits == 0 || !long.TryParse(value.AsSpan(0, digits), NumberStyles.None, CultureInfo.InvariantCulture, out var number))
        {
            throw new FormatException("want a number of bytes, e.g. 67108864, 64MiB or 64MB");
        }

        long unit = value[digits..] switch
        {
            "" or "B" => 1,
            "KB" or "kB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "TB" => 1000L * 1000 * 1000 * 1000,
            "KiB" => 1024,
            "MiB" => 1024 * 1024,
            "GiB" => 1024 * 1024 * 1024,
            "TiB" => 1024L * 1024 * 1024 * 1024,
            _ => throw new FormatException("unknown unit (want B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"),
        };
        return number <= long.MaxValue / unit ? number * unit : throw new FormatException("too large");
    }

    private static LogLevel ParseLevel(string value) => value switch
    {
        "disabled" => LogLevel.None,
        "debug" => LogLevel.Debug,
        "info" => LogLevel.Information,
        "warn" => LogLevel.Warning,
        "error" => LogLevel.Error,
        _ => throw new FormatException("want disabled, debug, info, warn or error"),
    };

    private static MiniQueueCommitMode ParseCommit(string value) => value switch
    {
        "fsync" => MiniQueueCommitMode.Fsync,
        "interval" => MiniQueueCommitMode.Interval,
        _ => throw new FormatException("want fsync or interval"),
    };

    private sealed record Definition(string Name, string Type, string Usage, string Default, Action<string> Set);
}
