using System.Globalization;

namespace MiniQueue.Host;

/// <summary>
/// Go's duration syntax (<c>time.ParseDuration</c>): a sign, then one or more decimal numbers each with a unit —
/// <c>ns</c>, <c>us</c> (or <c>µs</c>), <c>ms</c>, <c>s</c>, <c>m</c>, <c>h</c> — such as <c>300ms</c>, <c>1.5s</c> or
/// <c>2h45m</c>; a bare <c>0</c> is zero.
/// </summary>
internal static class GoDuration
{
    private static readonly (string Unit, double Ticks)[] s_units =
    [
        ("ns", 0.01), ("us", 10), ("µs", 10), ("μs", 10), ("ms", TimeSpan.TicksPerMillisecond), ("s", TimeSpan.TicksPerSecond),
        ("m", TimeSpan.TicksPerMinute), ("h", TimeSpan.TicksPerHour),
    ];

    /// <exception cref="FormatException">The text is not a Go duration (Go's flag package reports this as "parse error").</exception>
    public static TimeSpan Parse(string text)
    {
        var rest = text.AsSpan();
        var negative = false;
        if (rest.Length > 0 && rest[0] is '-' or '+')
        {
            negative = rest[0] == '-';
            rest = rest[1..];
        }

        if (rest.SequenceEqual("0"))
        {
            return TimeSpan.Zero;
        }

        if (rest.IsEmpty)
        {
            throw new FormatException("parse error");
        }

        double ticks = 0;
        while (!rest.IsEmpty)
        {
            var digits = 0;
            while (digits < rest.Length && (char.IsAsciiDigit(rest[digits]) || rest[digits] == '.'))
            {
                digits++;
            }

            if (digits == 0 || !double.TryParse(rest[..digits], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
            {
                throw new FormatException("parse error");
            }

            rest = rest[digits..];
            var unitLength = 0;
            while (unitLength < rest.Length && !char.IsAsciiDigit(rest[unitLength]) && rest[unitLength] != '.')
            {
                unitLength++;
            }

            var unit = rest[..unitLength].ToString();
            var match = Array.Find(s_units, u => u.Unit == unit);
            if (match.Unit is null)
            {
                throw new FormatException(unitLength == 0 ? "parse error (missing unit)" : $"parse error (unknown unit \"{unit}\")");
            }

            ticks += number * match.Ticks;
            rest = rest[unitLength..];
        }

        if (ticks > TimeSpan.MaxValue.Ticks)
        {
            throw new FormatException("parse error (too long)");
        }

        return TimeSpan.FromTicks((long)(negative ? -ticks : ticks));
    }
}
