using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using FASTER.core;

namespace MiniQueue.Storage;

/// <summary>
/// FasterLog's commit metadata, kept so that a failed write never costs the last good one. It replaces FASTER's
/// <c>DeviceLogCommitCheckpointManager</c>, which on a full disk ignores a failed write, deletes the previous file anyway
/// and lets the log delete the segments that file pointed into: the next open then finds no metadata and recovers an
/// empty log.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Each written commit is a file <c>log-commits/commit.N</c> with a header (the commit's number, log begin and end),
/// FASTER's metadata and a CRC-32C, written whole through <see cref="DataFiles.WriteAtomically"/>. A torn or short file
/// fails its checksum and is skipped, so recovery uses the newest file that is whole.</item>
/// <item>The two newest whole files are kept; older ones go once a newer one is durable. Either can start a recovery:
/// segments below the log's start are deleted only once the older of the two starts past them
/// (<see cref="DurableBeginAddress"/>, which <see cref="LogDevice"/> checks), so a newest file that turns out damaged
/// still leaves a spare with every segment it needs.</item>
/// <item>A write that fails is not thrown to FasterLog (which would swallow it and leave its commit waiters hanging):
/// it is reported to the store and tried again at the next commit.</item>
/// <item>Files that FASTER's own manager wrote (<c>commit.N.0</c>) are still read, so older data directories open.</item>
/// <item>Like FASTER's manager, only every <c>throttle</c>-th commit is written unless FasterLog asks (when the log's
/// start moved): recovery scans forward from the newest metadata to the last commit record in the log.</item>
/// </list>
/// </remarks>
internal sealed class CommitMetadataFiles : ILogCommitManager
{
    public const string FolderName = "log-commits";

    private const uint Magic = 0x4D43514D; // "MQCM"
    private const int Version = 1;
    private const int HeaderBytes = 4 + 4 + 8 + 8 + 8 + 4;
    private const string Prefix = "commit.";

    private readonly string _folder;
    private readonly DataFiles _files;
    private readonly int _throttle;
    private readonly long _pageSize;
    private readonly Action<Exception> _onWriteFailed;
    private readonly Action _onWritten;
    private readonly Lock _lock = new();
    private long _calls;
    private bool _retry;
    private long _durableBegin;

    /// <summary>The log begin of the newest whole file and of the spare before it (0: none).</summary>
    private long _newestBegin;

    public CommitMetadataFiles(string directory, DataFiles files, int throttle, long pageSize, Action<Exception> onWriteFailed, Action onWritten)
    {
        _pageSize = pageSize;
        _folder = Path.Combine(directory, FolderName);
        Directory.CreateDirectory(_folder);
        _files = files;

        // A temporary file is what a crash in the middle of a write leaves; the previous file is still whole.
        foreach (var temporary in Directory.EnumerateFiles(_folder, "*.tmp"))
        {
            files.TryDelete(temporary);
        }

        _throttle = throttle;
        _onWriteFailed = onWriteFailed;
        _onWritten = onWritten;
    }

    /// <summary>
    /// The log's start as the older of the two kept commit files records it: recovery starts at or after it, whichever
    /// file it uses. Log segments wholly below it may be deleted; others not yet, whatever FasterLog thinks.
    /// </summary>
    public long DurableBeginAddress => Volatile.Read(ref _durableBegin);

    /// <summary>
    /// Whether the newest file starts the log later than the spare, so one more written file would let segments go (and
    /// the last write worked: when writes fail, every commit tries again anyway).
    /// </summary>
    public bool SpareLags
    {
        get
        {
            lock (_lock)
            {
                return Lags && !_retry;
            }
        }
    }

    /// <summary>Whether the spare starts the log at an earlier page than the newest file (space that one more file frees).</summary>
    private bool Lags => _durableBegin / _pageSize < _newestBegin / _pageSize;

    /// <summary>The commit number of the newest file written or recovered from (0: none).</summary>
    public long LastWritten { get; private set; }

    public void Commit(long beginAddress, long untilAddress, byte[] commitMetadata, long commitNum, bool forceWriteMetadata)
    {
        lock (_lock)
        {
            if (!forceWriteMetadata && !_retry && !Lags && _throttle > 1 && _calls++ % _throttle != 0)
            {
                return;
            }

            var file = new byte[HeaderBytes + commitMetadata.Length + 4];
            BinaryPrimitives.WriteUInt32LittleEndian(file, Magic);
            BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(4), Version);
            BinaryPrimitives.WriteInt64LittleEndian(file.AsSpan(8), commitNum);
            BinaryPrimitives.WriteInt64LittleEndian(file.AsSpan(16), beginAddress);
            BinaryPrimitives.WriteInt64LittleEndian(file.AsSpan(24), untilAddress);
            BinaryPrimitives.WriteInt32LittleEndian(file.AsSpan(32), commitMetadata.Length);
            commitMetadata.CopyTo(file.AsSpan(HeaderBytes));
            BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(file.Length - 4), Crc32C(file.AsSpan(0, file.Length - 4)));
            try
            {
                _files.WriteAtomically(PathOf(commitNum), file);
            }
            catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
            {
                _retry = true;
                _onWriteFailed(exception);
                return;
            }

            _retry = false;
            LastWritten = commitNum;
            Volatile.Write(ref _durableBegin, Math.Max(_durableBegin, _newestBegin));
            _newestBegin = beginAddress;
            RemoveAllBut(keep: 2);
        }

        _onWritten();
    }

    /// <summary>The metadata of a commit file that is whole, or null (FasterLog then tries the next older one).</summary>
    public byte[]? GetCommitMetadata(long commitNum) => Read(commitNum)?.Metadata;

    /// <summary>The commits on disk, newest first (whole or not: <see cref="GetCommitMetadata"/> tells).</summary>
    public IEnumerable<long> ListCommits() => [.. List().Select(static entry => entry.Number).Distinct().OrderDescending()];

    public void RemoveCommit(long commitNum)
    {
        foreach (var (number, path) in List())
        {
            if (number == commitNum)
            {
                _files.TryDelete(path);
            }
        }
    }

    public void RemoveAllCommits()
    {
        foreach (var (_, path) in List())
        {
            _files.TryDelete(path);
        }
    }

    /// <summary>FasterLog recovered from <paramref name="commitNum"/>: newer files are damaged, one older stays as a spare.</summary>
    public void OnRecovery(long commitNum)
    {
        lock (_lock)
        {
            foreach (var (number, path) in List())
            {
                if (number > commitNum)
                {
                    _files.TryDelete(path);
                }
            }

            // The recovered file and the whole one before it (the spare) are the two kept.
            var kept = List().Select(static entry => entry.Number).Distinct().OrderDescending()
                .Select(number => Read(number)).OfType<(byte[] Metadata, long BeginAddress)>().Take(2).ToList();
            if (kept.Count > 0)
            {
                LastWritten = commitNum;
                _newestBegin = kept[0].BeginAddress;
                Volatile.Write(ref _durableBegin, kept.Count > 1 ? kept[1].BeginAddress : 0);
            }
        }
    }

    public void Dispose()
    {
    }

    private string PathOf(long commitNum) => Path.Combine(_folder, Prefix + commitNum.ToString(CultureInfo.InvariantCulture));

    /// <summary>Keeps the <paramref name="keep"/> newest whole files (and any newer damaged ones); deletes the rest.</summary>
    private void RemoveAllBut(int keep)
    {
        var whole = 0;
        foreach (var (number, path) in List().OrderByDescending(static entry => entry.Number))
        {
            if (whole >= keep)
            {
                _files.TryDelete(path);
            }
            else if (Read(number) is not null)
            {
                whole++;
            }
        }
    }

    /// <summary>Every commit file in the folder, ours (<c>commit.N</c>) and FASTER's (<c>commit.N.0</c>).</summary>
    private List<(long Number, string Path)> List()
    {
        var found = new List<(long, string)>();
        foreach (var path in Directory.EnumerateFiles(_folder, Prefix + "*"))
        {
            var name = Path.GetFileName(path)[Prefix.Length..];
            if (name.EndsWith(".0", StringComparison.Ordinal))
            {
                name = name[..^2];
            }

            if (long.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var number))
            {
                found.Add((number, path));
            }
        }

        return found;
    }

    /// <summary>A commit file's content, if it is whole: ours first, then FASTER's format for the same number.</summary>
    private (byte[] Metadata, long BeginAddress)? Read(long commitNum)
    {
        if (_files.TryReadAll(PathOf(commitNum)) is { } file && file.Length >= HeaderBytes + 4)
        {
            var length = BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan(32));
            if (BinaryPrimitives.ReadUInt32LittleEndian(file) == Magic
                && BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan(4)) == Version
                && BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(8)) == commitNum
                && length >= 0 && file.Length == HeaderBytes + length + 4
                && BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(file.Length - 4)) == Crc32C(file.AsSpan(0, file.Length - 4)))
            {
                return (file.AsSpan(HeaderBytes, length).ToArray(), BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(16)));
            }
        }

        // FASTER's DeviceLogCommitCheckpointManager: [length:4][metadata], zero-padded to 512 bytes. The metadata carries
        // FASTER's own checksum, which FasterLog checks; its log begin follows a version and that checksum.
        if (_files.TryReadAll(PathOf(commitNum) + ".0") is { } legacy && legacy.Length >= 4)
        {
            var length = BinaryPrimitives.ReadInt32LittleEndian(legacy);
            if (length >= 20 && length <= legacy.Length - 4)
            {
                return (legacy.AsSpan(4, length).ToArray(), BinaryPrimitives.ReadInt64LittleEndian(legacy.AsSpan(4 + 12)));
            }
        }

        return null;
    }

    private static uint Crc32C(ReadOnlySpan<byte> bytes)
    {
        var crc = uint.MaxValue;
        while (bytes.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(bytes));
            bytes = bytes[8..];
        }

        foreach (var b in bytes)
        {
            crc = BitOperations.Crc32C(crc, b);
        }

        return ~crc;
    }
}
