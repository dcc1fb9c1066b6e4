using System.Globalization;

namespace MiniQueue.Samples;

/// <summary>
/// A small command line: <c>--name value</c>, <c>--name=value</c>, <c>--flag</c>, and plain arguments (everything
/// after <c>--</c> is plain). Every example accepts <c>--url</c>, <c>--cacert</c>, <c>--topic</c> and <c>--help</c>.
/// A malformed command line is an <see cref="ArgumentException"/> whose message names the option.
/// </summary>
internal sealed class CommandLine
{
    private static readonly string[] s_commonOptions = ["url", "cacert", "topic"];

    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);
    private readonly List<string> _arguments = [];

    private CommandLine()
    {
    }

    /// <summary>The plain arguments, in order.</summary>
    public IReadOnlyList<string> Arguments => _arguments;

    /// <summary>Whether <c>--help</c> or <c>-h</c> was given.</summary>
    public bool IsHelp => _flags.Contains("help");

    /// <summary>Parses <paramref name="args"/>, knowing the example's own options (which take a value) and flags (which do not).</summary>
    public static CommandLine Parse(IReadOnlyList<string> args, IReadOnlyCollection<string> options, IReadOnlyCollection<string> flags)
    {
        var line = new CommandLine();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (arg == "--")
            {
                line._arguments.AddRange(args.Skip(i + 1));
                break;
            }

            if (arg is "-h" or "--help")
            {
                line._flags.Add("help");
                continue;
            }

            if (!arg.StartsWith("--", StringComparison.Ordinal))
            {
                if (arg.Length > 1 && arg[0] == '-')
                {
                    throw new ArgumentException($"unknown option {arg} (options start with --; put -- before text that starts with -)");
                }

                line._arguments.Add(arg);
                continue;
            }

            var equals = arg.IndexOf('=', StringComparison.Ordinal);
            var name = equals < 0 ? arg[2..] : arg[2..equals];
            if (flags.Contains(name))
            {
                if (equals >= 0)
                {
                    throw new ArgumentException($"--{name} takes no value");
                }

                line._flags.Add(name);
            }
            else if (options.Contains(name) || s_commonOptions.Contains(name))
            {
                if (equals >= 0)
                {
                    line._values[name] = arg[(equals + 1)..];
                }
                else if (i + 1 < args.Count)
                {
                    line._values[name] = args[++i];
                }
                else
                {
                    throw new ArgumentException($"--{name} needs a value");
                }
            }
            else
            {
                throw new ArgumentException($"unknown option --{name}");
            }
        }

        return line;
    }

    /// <summary>Whether the flag <c>--<paramref name="name"/></c> was given.</summary>
    public bool Has(string name) => _flags.Contains(name);

    /// <summary>The value of <c>--<paramref name="name"/></c>, or <see langword="null"/>.</summary>
    public string? Get(string name) => _values.GetValueOrDefault(name);

    /// <summary>The value of <c>--<paramref name="name"/></c>, or <paramref name="fallback"/>.</summary>
    public string Get(string name, string fallback) => _values.GetValueOrDefault(name, fallback);

    /// <summary>The whole number given with <c>--<paramref name="name"/></c>, or <paramref name="fallback"/>.</summary>
    public int GetInt(string name, int fallback, int minimum)
    {
        if (!_values.TryGetValue(name, out var text))
        {
            return fallback;
        }

        if (!int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) || value < minimum)
        {
            throw new ArgumentException($"--{name} must be a whole number of at least {minimum}, not '{text}'");
        }

        return value;
    }

    /// <summary>The number given with <c>--<paramref name="name"/></c> (decimals allowed), or <paramref name="fallback"/>.</summary>
    public double GetDouble(string name, double fallback, double minimum, double maximum)
    {
        if (!_values.TryGetValue(name, out var text))
        {
            return fallback;
        }

        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !(value >= minimum && value <= maximum))
        {
            throw new ArgumentException($"--{name} must be a number from {minimum.ToString(CultureInfo.InvariantCulture)} to {maximum.ToString(CultureInfo.InvariantCulture)}, not '{text}'");
        }

        return value;
    }
}
