using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace MiniQueue.Host.Security;

/// <summary>What an identity may do: its bits combine.</summary>
[Flags]
internal enum Permissions
{
    None = 0,
    Publish = 1,
    Subscribe = 2,
    Purge = 4,
    Redrive = 8,
    Metrics = 16,
}

/// <summary>
/// The <c>-auth</c> file: the identities the host knows, each with a name, the SHA-256 of its bearer token (optional: an
/// identity may be a client certificate's only) and its grants. JSON:
/// <code>
/// { "identities": [
///   { "name": "orders-app", "token_sha256": "64 hex digits",
///     "grants": [ { "topics": "orders.*", "allow": ["publish", "subscribe"] }, { "allow": ["metrics"] } ] } ] }
/// </code>
/// <c>topics</c> is a topic name, a prefix ending in <c>*</c>, or <c>*</c> (the default); <c>allow</c> holds publish,
/// subscribe, purge, redrive, metrics. Anything else (an unknown property, a repeated name or token, a malformed hash)
/// makes the whole file invalid: a typo in a security file must not grant or revoke by accident.
/// </summary>
internal sealed class AccessFile
{
    private readonly Identity[] _identities;
    private readonly Dictionary<string, Identity> _byName;

    private AccessFile(Identity[] identities)
    {
        _identities = identities;
        _byName = identities.ToDictionary(static identity => identity.Name, StringComparer.Ordinal);
    }

    public int Count => _identities.Length;

    /// <summary>
    /// The identity whose token is <paramref name="token"/>, or null. Compares the token's hash with every identity's, in
    /// constant time each, and always all of them: the time taken says nothing of which, or how much of one, matched.
    /// </summary>
    public Identity? FindByToken(ReadOnlySpan<char> token)
    {
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        var bytes = new byte[Encoding.UTF8.GetByteCount(token)];
        Encoding.UTF8.GetBytes(token, bytes);
        SHA256.HashData(bytes, hash);
        CryptographicOperations.ZeroMemory(bytes);
        Identity? found = null;
        foreach (var identity in _identities)
        {
            if (identity.TokenHash is { } expected && CryptographicOperations.FixedTimeEquals(hash, expected))
            {
                found = identity;
            }
        }

        return found;
    }

    /// <summary>The identity named <paramref name="name"/> (a client certificate's subject common name), or null.</summary>
    public Identity? FindByName(string name) => _byName.GetValueOrDefault(name);

    /// <summary>Reads an access file; throws <see cref="FormatException"/> saying what is wrong with it.</summary>
    public static AccessFile Parse(string json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException exception)
        {
            throw new FormatException($"not valid JSON: {exception.Message}", exception);
        }

        using (document)
        {
            var root = document.RootElement;
            Expect(root, JsonValueKind.Object, "the file");
            JsonElement list = default;
            foreach (var property in root.EnumerateObject())
            {
                list = property.Name == "identities" ? property.Value : throw new FormatException($"unknown property \"{property.Name}\" (expected \"identities\")");
            }

            if (list.ValueKind == JsonValueKind.Undefined)
            {
                throw new FormatException("\"identities\" is missing");
            }

            Expect(list, JsonValueKind.Array, "\"identities\"");
            var identities = new List<Identity>();
            var names = new HashSet<string>(StringComparer.Ordinal);
            var hashes = new HashSet<string>(StringComparer.Ordinal);
            var index = 0;
            foreach (var element in list.EnumerateArray())
            {
                var identity = ParseIdentity(element, $"identities[{index}]");
                if (!names.Add(identity.Name))
                {
                    throw new FormatException($"identities[{index}]: the name \"{identity.Name}\" is used twice");
                }

                if (identity.TokenHash is { } hash && !hashes.Add(Convert.ToHexString(hash)))
                {
                    throw new FormatException($"identities[{index}] ({identity.Name}): its token_sha256 is another identity's");
                }

                identities.Add(identity);
                index++;
            }

            return new AccessFile([.. identities]);
        }
    }

    private static Identity ParseIdentity(JsonElement element, string where)
    {
        Expect(element, JsonValueKind.Object, where);
        string? name = null;
        byte[]? hash = null;
        List<Grant>? grants = null;
        foreach (var property in element.EnumerateObject())
        {
            switch (property.Name)
            {
                case "name":
                    name = String(property.Value, $"{where}.name");
                    if (name.Length == 0 || name.Length > 256 || name.Any(char.IsControl))
                    {
                        throw new FormatException($"{where}.name must be 1 to 256 characters, none of them a control character");
                    }

                    break;
                case "token_sha256":
                    var hex = String(property.Value, $"{where}.token_sha256");
                    if (hex.Length != 2 * SHA256.HashSizeInBytes || !hex.All(char.IsAsciiHexDigit))
                    {
                        throw new FormatException($"{where}.token_sha256 must be 64 hexadecimal digits (the SHA-256 of the token; see docs/security.md)");
                    }

                    hash = Convert.FromHexString(hex);
                    break;
                case "grants":
                    Expect(property.Value, JsonValueKind.Array, $"{where}.grants");
                    grants = [.. property.Value.EnumerateArray().Select((grant, i) => ParseGrant(grant, $"{where}.grants[{i}]"))];
                    break;
                default:
                    throw new FormatException($"{where}: unknown property \"{property.Name}\" (expected name, token_sha256, grants)");
            }
        }

        return new Identity(
            name ?? throw new FormatException($"{where}: \"name\" is missing"),
            hash,
            [.. grants ?? throw new FormatException($"{where}: \"grants\" is missing")]);
    }

    private static Grant ParseGrant(JsonElement element, string where)
    {
        Expect(element, JsonValueKind.Object, where);
        var topics = "*";
        var allowed = Permissions.None;
        var hasAllow = false;
        foreach (var property in element.EnumerateObject())
        {
            switch (property.Name)
            {
                case "topics":
                    topics = String(property.Value, $"{where}.topics");
                    var star = topics.IndexOf('*', StringComparison.Ordinal);
                    if (topics.Length == 0 || (star >= 0 && star != topics.Length - 1) || (star < 0 && !TopicName.IsValid(topics)))
                    {
                        throw new FormatException($"{where}.topics must be a topic name, a prefix ending in '*', or '*', not \"{topics}\"");
                    }

                    break;
                case "allow":
                    Expect(property.Value, JsonValueKind.Array, $"{where}.allow");
                    hasAllow = true;
                    foreach (var item in property.Value.EnumerateArray())
                    {
                        var operation = String(item, $"{where}.allow[]");
                        allowed |= PermissionOf(operation) is var permission && permission != Permissions.None
                            ? permission
                            : throw new FormatException($"{where}.allow: unknown operation \"{operation}\" (expected publish, subscribe, purge, redrive, metrics)");
                    }

                    break;
                default:
                    throw new FormatException($"{where}: unknown property \"{property.Name}\" (expected topics, allow)");
            }
        }

        return hasAllow ? new Grant(topics, allowed) : throw new FormatException($"{where}: \"allow\" is missing");
    }

    /// <summary>
    /// The permission an operation's name asks for (the names of the file's <c>allow</c>, which are also those of the
    /// authorization requirements: <see cref="MiniQueue.Http.MiniQueueOperations"/> and metrics); none for another name.
    /// </summary>
    public static Permissions PermissionOf(string? operation) => operation switch
    {
        "publish" => Permissions.Publish,
        "subscribe" => Permissions.Subscribe,
        "purge" => Permissions.Purge,
        "redrive" => Permissions.Redrive,
        "metrics" => Permissions.Metrics,
        _ => Permissions.None,
    };

    private static string String(JsonElement element, string where)
    {
        Expect(element, JsonValueKind.String, where);
        return element.GetString()!;
    }

    private static void Expect(JsonElement element, JsonValueKind kind, string where)
    {
        if (element.ValueKind != kind)
        {
            throw new FormatException($"{where} must be {(kind == JsonValueKind.Object ? "an object" : kind == JsonValueKind.Array ? "an array" : "a string")}, not {element.ValueKind.ToString().ToLowerInvariant()}");
        }
    }
}

/// <summary>An identity of the access file.</summary>
internal sealed record Identity(string Name, byte[]? TokenHash, Grant[] Grants)
{
    /// <summary>Whether a grant allows <paramref name="permission"/> on <paramref name="topic"/> (null: not about a topic, as metrics).</summary>
    public bool Allows(Permissions permission, string? topic) =>
        Grants.Any(grant => (grant.Allowed & permission) == permission && (topic is null || grant.Matches(topic)));
}

/// <summary>One grant: operations on the topics a name or prefix pattern names.</summary>
internal sealed record Grant(string Topics, Permissions Allowed)
{
    public bool Matches(string topic) => TopicName.MatchesPattern(Topics, topic);
}
