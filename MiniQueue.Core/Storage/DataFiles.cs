using System.Runtime.InteropServices;

namespace MiniQueue.Storage;

/// <summary>
/// How the store writes its small files (the manifest, the log's commit metadata): whole, or not at all. A file is
/// written under a temporary name and flushed to the disk, then renamed into place, and the folder is flushed so that
/// the new name survives a power loss. A failure at any step leaves the previous file as it was.
/// </summary>
/// <remarks>The methods are virtual so that tests can make the disk fail under the store.</remarks>
internal partial class DataFiles
{
    public static readonly DataFiles Default = new();

    /// <summary>Replaces <paramref name="path"/> with <paramref name="contents"/>, atomically and durably.</summary>
    /// <exception cref="IOException">The disk did not take it (the previous file, if any, is unchanged).</exception>
    public void WriteAtomically(string path, ReadOnlySpan<byte> contents)
    {
        var temporary = path + ".tmp";
        try
        {
            WriteDurably(temporary, contents);
            Rename(temporary, path);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }

        FlushDirectory(Path.GetDirectoryName(path)!);
    }

    /// <summary>Creates or overwrites a file with <paramref name="contents"/> and flushes it to the disk.</summary>
    protected virtual void WriteDurably(string path, ReadOnlySpan<byte> contents)
    {
        using var file = File.OpenHandle(path, FileMode.Create, FileAccess.Write, FileShare.None);
        RandomAccess.Write(file, contents, 0);
        RandomAccess.FlushToDisk(file);
    }

    protected virtual void Rename(string source, string destination) => File.Move(source, destination, overwrite: true);

    /// <summary>The whole file, or null when it does not exist.</summary>
    public virtual byte[]? TryReadAll(string path)
    {
        try
        {
            return File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
    }

    public virtual void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Flushes a folder's entries (names created, renamed or deleted in it) to the disk.</summary>
    public virtual void FlushDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS() && !OperatingSystem.IsFreeBSD())
        {
            // Windows makes a rename durable with the file system's own journal; there is nothing to open.
            return;
        }

        const int ReadOnly = 0;
        var descriptor = Open(directory, ReadOnly);
        if (descriptor < 0)
        {
            throw new IOException($"The folder {directory} could not be opened to flush it: {Marshal.GetLastPInvokeErrorMessage()}");
        }

        try
        {
            if (Fsync(descriptor) != 0)
            {
                throw new IOException($"The folder {directory} could not be flushed to the disk: {Marshal.GetLastPInvokeErrorMessage()}");
            }
        }
        finally
        {
            _ = Close(descriptor);
        }
    }

    /// <summary>
    /// Gives back the disk blocks of a range of a file without changing its size (it reads as zeros). Returns false
    /// where the filesystem or the platform cannot (the space then comes back only when the file is deleted).
    /// </summary>
    public virtual bool PunchHole(string path, long offset, long length)
    {
        if (!OperatingSystem.IsLinux() || length <= 0)
        {
            return false;
        }

        const int WriteOnly = 1;
        const int KeepSizePunchHole = 0x01 | 0x02;
        var descriptor = Open(path, WriteOnly);
        if (descriptor < 0)
        {
            return false;
        }

        try
        {
            return Fallocate(descriptor, KeepSizePunchHole, offset, length) == 0;
        }
        finally
        {
            _ = Close(descriptor);
        }
    }

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    private static partial int Fallocate(int descriptor, int mode, long offset, long length);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int descriptor);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int descriptor);
}
