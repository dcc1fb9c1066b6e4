using System.Text.Json;
using System.Text.Json.Serialization;

namespace MiniQueue.Storage;

/// <summary>
/// The settings a data directory was created with, kept beside the log in <c>manifest.json</c>.
/// FasterLog does not notice when it is reopened with other settings (it can silently read back a fraction of the log),
/// so every open compares the settings with the manifest and refuses a mismatch.
/// </summary>
internal sealed record StoreManifest(
    [property: JsonPropertyName("format")] int Format,
    [property: JsonPropertyName("pageBytes")] int PageBytes,
    [property: JsonPropertyName("segmentBytes")] long SegmentBytes,
    [property: JsonPropertyName("checksum")] string Checksum,
    [property: JsonPropertyName("fastCommit")] bool FastCommit)
{
    /// <summary>
    /// The version of the record encoding and of this layout. Format 2 added record kinds (Schedule) to format 1 and
    /// changed nothing else, so a format-1 directory is upgraded in place when it is opened (its manifest says 2 from
    /// then on, and versions that read only format 1 refuse it rather than misread it).
    /// </summary>
    public const int CurrentFormat = 2;

    /// <summary>The oldest format this version opens (and upgrades).</summary>
    public const int OldestReadableFormat = 1;

    public const string FileName = "manifest.json";

    public const string PerEntryChecksum = "PerEntry";

    public static StoreManifest? TryRead(string directory)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize(File.ReadAllBytes(path), ManifestJsonContext.Default.StoreManifest)
                ?? throw new MiniQueueStoreException($"{path} is empty.");
        }
        catch (JsonException exception)
        {
            throw new MiniQueueStoreException($"{path} is not a MiniQueue manifest: {exception.Message}", exception);
        }
    }

    /// <summary>Writes the manifest durably: a temporary file, flushed to disk, then renamed into place.</summary>
    public void Write(string directory, DataFiles files) =>
        files.WriteAtomically(Path.Combine(directory, FileName), JsonSerializer.SerializeToUtf8Bytes(this, ManifestJsonContext.Default.StoreManifest));
}

[JsonSerializable(typeof(StoreManifest))]
[JsonSourceGenerationOptions(WriteIndented = true)]
internal sealed partial class ManifestJsonContext : JsonSerializerContext;
