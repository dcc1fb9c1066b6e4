using System.Collections.Concurrent;
using System.Text;
using System.Text.Unicode;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace MiniQueue.Http.Protocol;

/// <summary>
/// Reads the topic of a request: the last segment of the request's raw target, percent-decoded as UTF-8. The decoded
/// <c>Request.Path</c> cannot be used alone: it keeps <c>%2F</c> encoded and cannot tell <c>%25FF</c> (the valid name
/// <c>%FF</c>) from <c>%FF</c> (not UTF-8).
/// </summary>
internal static class TopicRoute
{
    // A valid topic is at most 255 UTF-8 bytes, each written as at most 3 characters ("%XX").
    private const int MaxEncodedLength = TopicName.MaxUtf8Bytes * 3;

    /// <summary>The topic the request names, or <see langword="null"/> when it is not a valid topic name.</summary>
    public static string? GetTopic(HttpContext context)
    {
        var request = context.Request;
        var raw = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        var segment = LastSegment(string.IsNullOrEmpty(raw) ? request.Path.ToUriComponent().AsSpan() : PathOf(raw));
        if (segment.IsEmpty || segment.Length > MaxEncodedLength)
        {
            return null;
        }

        // The path the router matched must end with the same name; it differs only when the server normalised the
        // path (dot segments), and then the raw target does not name a topic the route saw.
        var path = request.Path.Value.AsSpan();
        var routed = LastSegment(path);
        string? topic;
        if (segment.IndexOf('%') < 0)
        {
            if (!segment.SequenceEqual(routed))
            {
                return null;
            }

            // Reuse the router's string when there is one, or a name seen before: no allocation on the hot path.
            topic = request.RouteValues.TryGetValue("topic", out var value) && value is string routeValue && segment.SequenceEqual(routeValue)
                ? routeValue
                : Recent(segment);
        }
        else
        {
            // Kestrel decodes the path except %2F; a name holding '/' is invalid anyway, so any other difference means
            // the server normalised the path.
            topic = Decode(segment);
            if (topic is null || !routed.SequenceEqual(topic.AsSpan()))
            {
                return null;
            }
        }

        return TopicName.IsValid(topic) ? topic : null;
    }

    /// <summary>
    /// The string of a topic name, from the valid names seen recently when it is one of them. At most
    /// <see cref="RecentLimit"/> names are kept, then the set starts over.
    /// </summary>
    private static string Recent(ReadOnlySpan<char> segment)
    {
        var lookup = s_recent.GetAlternateLookup<ReadOnlySpan<char>>();
        if (lookup.TryGetValue(segment, out var known))
        {
            return known;
        }

        var name = segment.ToString();
        if (TopicName.IsValid(name))
        {
            if (s_recent.Count >= RecentLimit)
            {
                s_recent.Clear();
            }

            s_recent.TryAdd(name, name);
        }

        return name;
    }

    private const int RecentLimit = 1024;
    private static readonly ConcurrentDictionary<string, string> s_recent = new(StringComparer.Ordinal);

    private static ReadOnlySpan<char> PathOf(string raw)
    {
        var path = raw.AsSpan();
        if (path.Length > 0 && path[0] != '/')
        {
            // Absolute form (a request through a proxy): skip "scheme://authority".
            var scheme = path.IndexOf("://", StringComparison.Ordinal);
            if (scheme < 0)
            {
                return [];
            }

            path = path[(scheme + 3)..];
            var slash = path.IndexOf('/');
            path = slash < 0 ? [] : path[slash..];
        }

        var query = path.IndexOfAny('?', '#');
        return query < 0 ? path : path[..query];
    }

    private static ReadOnlySpan<char> LastSegment(ReadOnlySpan<char> path) => path[(path.LastIndexOf('/') + 1)..];

    private static string? Decode(ReadOnlySpan<char> segment)
    {
        Span<byte> bytes = stackalloc byte[TopicName.MaxUtf8Bytes + 4];
        var length = 0;
        for (var i = 0; i < segment.Length; i++)
        {
            var c = segment[i];
            if (length > TopicName.MaxUtf8Bytes)
            {
                return null;
            }

            if (c == '%')
            {
                if (i + 2 >= segment.Length || !char.IsAsciiHexDigit(segment[i + 1]) || !char.IsAsciiHexDigit(segment[i + 2]))
                {
                    return null;
                }

                bytes[length++] = (byte)((HexValue(segment[i + 1]) << 4) | HexValue(segment[i + 2]));
                i += 2;
            }
            else if (c < 0x80)
            {
                bytes[length++] = (byte)c;
            }
            else
            {
                // A server that hands over the target as text may have decoded raw UTF-8 already.
                var end = i + 1 < segment.Length && char.IsSurrogatePair(c, segment[i + 1]) ? i + 2 : i + 1;
                if (Encoding.UTF8.GetByteCount(segment[i..end]) > bytes.Length - length)
                {
                    return null;
                }

                length += Encoding.UTF8.GetBytes(segment[i..end], bytes[length..]);
                i = end - 1;
            }
        }

        var utf8 = bytes[..length];
        return length <= TopicName.MaxUtf8Bytes && Utf8.IsValid(utf8) ? Encoding.UTF8.GetString(utf8) : null;
    }

    private static int HexValue(char c) => c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}
