namespace MiniQueue.Storage;

/// <summary>
/// Writes a log segment file full of zeros, and flushes it, before the log reaches it: a write-through write into
/// blocks that are already allocated and written needs no metadata written with it (new blocks, a new file size: a
/// journal commit on a journaled ext4), and costs the filesystem much less than one that extends the file
/// (docs/benchmarks.md, fourteenth and sixteenth rounds).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>A fill only extends the file: zeros from where it ends to the segment's size, so whatever the file holds (the
/// log's records, or what a crash left past them) stays as it is. The log's writer <see cref="Stop"/>s a fill before
/// it opens the segment, so the two never write the same file at once, and a fill stopped part-way leaves zeros up to
/// where it was, which the log then writes over.</item>
/// <item>A segment is filled only while the disk has room for it beyond the reserve (<c>hasRoom</c>, asked with the
/// segment's size); a fill the disk refuses (ENOSPC, EIO) just ends: the log then extends the file as it would have
/// anyway.</item>
/// <item>The file's name is flushed to the disk with it (its folder is), which a segment the log creates itself does not
/// get (FASTER never flushes the folder).</item>
/// <item>Zeros past the log's tail read as the end of the log: FasterLog's recovery stops its scan for commit records at
/// a zero length, as it does where a segment file ends.</item>
/// </list>
/// </remarks>
internal sealed class SegmentFill
{
    private const int ChunkBytes = 64 * 1024;

    private static readonly byte[] s_zeros = new byte[ChunkBytes];

    private readonly long _size;
    private readonly Func<long, bool> _hasRoom;
    private readonly DataFiles _files;
    private readonly Task _done;
    private volatile bool _stopping;

    private SegmentFill(string path, long size, Func<long, bool> hasRoom, DataFiles files)
    {
        Path = path;
        _size = size;
        _hasRoom = hasRoom;
        _files = files;
        _done = Task.Factory.StartNew(Fill, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>Test seam: called after each chunk is written, with the fill (tests hold a fill part-way through).</summary>
    internal static Action<SegmentFill>? ChunkWritten { get; set; }

    /// <summary>The segment file.</summary>
    public string Path { get; }

    /// <summary>Whether <see cref="Stop"/> has been called.</summary>
    public bool Stopping => _stopping;

    /// <summary>The bytes of zeros written so far.</summary>
    public long Written { get; private set; }

    /// <summary>Whether the file was filled to the segment's size and flushed, and its name with it.</summary>
    public bool Completed { get; private set; }

    /// <summary>Starts filling the segment file at <paramref name="path"/> up to <paramref name="size"/> bytes, on a thread of its own.</summary>
    public static SegmentFill Start(string path, long size, Func<long, bool> hasRoom, DataFiles files) => new(path, size, hasRoom, files);

    /// <summary>Ends the fill after the chunk being written, and waits for it: the file is the log's from then on.</summary>
    public void Stop()
    {
        _stopping = true;
        _done.Wait();
    }

    private void Fill()
    {
        try
        {
            if (!_hasRoom(_size))
            {
                return;
            }

            using var handle = File.OpenHandle(Path, FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
            var end = RandomAccess.GetLength(handle);
            if (end >= _size)
            {
                return;
            }

            while (end < _size && !_stopping)
            {
                var length = (int)Math.Min(ChunkBytes, _size - end);
                RandomAccess.Write(handle, s_zeros.AsSpan(0, length), end);
                end += length;
                Written += length;
                ChunkWritten?.Invoke(this);
            }

            if (end == _size)
            {
                RandomAccess.FlushToDisk(handle);
                _files.FlushDirectory(System.IO.Path.GetDirectoryName(Path)!);
                Completed = true;
            }
        }
        catch (Exception)
        {
            // Whatever went wrong (a full disk, a folder gone), nothing is lost: the log writes this segment by extending
            // it, as without a fill. Nothing may reach the log's writer, which waits for the fill when it stops it.
        }
    }
}
