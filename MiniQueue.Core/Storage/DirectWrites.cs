using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace MiniQueue.Storage;

/// <summary>
/// Opens a log segment for writes that bypass the page cache (Linux <c>O_DIRECT | O_DSYNC</c>), where the filesystem
/// takes them at the log's sector size.
/// </summary>
/// <remarks>
/// FasterLog writes whole sectors from sector-aligned pages, so its writes can go from its own pages to the disk: no copy
/// into the page cache (a third of the kernel's time under a 1 KiB publish load was that copy), and each write is on the
/// disk when it returns, as with the written-through buffered handle it replaces (<c>O_DSYNC</c> keeps what the data
/// needs to be read back, its file size included). .NET's open has no flag for <c>O_DIRECT</c> (its "no buffering"
/// option is ignored on Linux), hence <c>open(2)</c> here. Where the filesystem refuses <c>O_DIRECT</c> (ramfs), or asks
/// for a coarser alignment than the sector size (a disk of 4 KiB logical sectors), or the kernel cannot say
/// (<c>statx</c> without <c>STATX_DIOALIGN</c>, before Linux 6.1), the caller opens the file as before.
/// </remarks>
internal static partial class DirectWrites
{
    private const int WriteOnly = 0x1;
    private const int Create = 0x40;
    private const int DataSync = 0x1000;
    private const int Direct = 0x4000;
    private const int CloseOnExec = 0x80000;

    /// <summary>rw-rw-rw- before the umask, as .NET creates files.</summary>
    private const int CreateMode = 0x1B6;

    private const int EmptyPath = 0x1000;
    private const uint DirectIoAlignment = 0x2000;

    /// <summary>A handle that writes <paramref name="path"/> directly, or null where that is not possible.</summary>
    public static SafeFileHandle? TryOpen(string path, int sectorSize)
    {
        if (!OperatingSystem.IsLinux() || Environment.GetEnvironmentVariable("MINIQUEUE_BUFFERED_LOG_WRITES") == "1")
        {
            return null;
        }

        var descriptor = Open(path, WriteOnly | Create | DataSync | Direct | CloseOnExec, CreateMode);
        if (descriptor < 0)
        {
            return null;
        }

        var handle = new SafeFileHandle(descriptor, ownsHandle: true);
        if (!Fits(descriptor, sectorSize))
        {
            handle.Dispose();
            return null;
        }

        return handle;
    }

    /// <summary>Whether writes of whole sectors from sector-aligned memory meet the file's alignment for direct I/O.</summary>
    private static unsafe bool Fits(int descriptor, int sectorSize)
    {
        // struct statx: stx_mask at 0, stx_dio_mem_align at 152, stx_dio_offset_align at 156 (256 bytes in all).
        var buffer = stackalloc byte[256];
        if (Statx(descriptor, "", EmptyPath, DirectIoAlignment, buffer) != 0 || (*(uint*)buffer & DirectIoAlignment) == 0)
        {
            return false;
        }

        var memory = *(uint*)(buffer + 152);
        var offset = *(uint*)(buffer + 156);
        return memory > 0 && offset > 0 && sectorSize % memory == 0 && sectorSize % offset == 0;
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int directory, string path, int flags, uint mask, byte* buffer);
}
