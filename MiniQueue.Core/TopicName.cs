using System.Text;

namespace MiniQueue;

/// <summary>The rule for topic names, shared by the engine and its fronts.</summary>
public static class TopicName
{
    /// <summary>The longest name, in UTF-8 bytes.</summary>
    public const int MaxUtf8Bytes = 255;

    /// <summary>
    /// Whether <paramref name="name"/> is a valid topic: 1 to 255 bytes of valid UTF-8 with no <c>/</c> and no control
    /// characters (U+0000–U+001F, U+007F–U+009F). Any other character is allowed; names are never parsed.
    /// </summary>
    public static bool IsValid(string? name) =>
        name is { Length: > 0 and <= MaxUtf8Bytes } && CountUtf8BytesIfValid(name) is > 0 and <= MaxUtf8Bytes;

    // Every char is at least one UTF-8 byte, so a name of more than MaxUtf8Bytes chars is never valid.
    private static int CountUtf8BytesIfValid(string name)
    {
        var bytes = 0;
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (c == '/' || c <= '\u001F' || (c >= '\u007F' && c <= '\u009F'))
            {
                return -1;
            }

            if (char.IsHighSurrogate(c))
            {
                if (i + 1 >= name.Length || !char.IsLowSurrogate(name[i + 1]))
                {
                    return -1;
                }

                i++;
                bytes += 4;
            }
            else if (char.IsLowSurrogate(c))
            {
                return -1;
            }
            else
            {
                bytes += c < 0x80 ? 1 : c < 0x800 ? 2 : 3;
            }

            if (bytes > MaxUtf8Bytes)
            {
                return -1;
            }
        }

        return bytes;
    }

    /// <summary>
    /// Whether <paramref name="topic"/> is one of the topics <paramref name="pattern"/> names: a topic name, or a prefix
    /// ending in <c>*</c> (<c>orders.*</c>; <c>*</c> alone names every topic). The rule of
    /// <see cref="MiniQueueTopicPolicy.Topics"/> (and of the standalone server's access file).
    /// </summary>
    public static bool MatchesPattern(string pattern, string topic)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(topic);
        return pattern.EndsWith('*')
            ? topic.StartsWith(pattern.AsSpan(0, pattern.Length - 1), StringComparison.Ordinal)
            : string.Equals(pattern, topic, StringComparison.Ordinal);
    }

    internal static byte[] ToUtf8(string name) => Encoding.UTF8.GetBytes(name);

    internal static void ThrowIfInvalid(string? name, string paramName)
    {
        ArgumentNullException.ThrowIfNull(name, paramName);
        if (!IsValid(name))
        {
            throw new ArgumentException(
                $"invalid topic value: a topic is 1 to {MaxUtf8Bytes} bytes of UTF-8 without '/' or control characters.", paramName);
        }
    }
}
