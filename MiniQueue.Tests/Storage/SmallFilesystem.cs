using System.Diagnostics;

namespace MiniQueue.Tests.Storage;

/// <summary>The kinds of small filesystem a test can mount.</summary>
public enum FilesystemKind
{
    /// <summary>An ext4 image file on a loop device: block allocation, delayed allocation, reserved blocks.</summary>
    Ext4,

    /// <summary>A tmpfs with a size limit: no device at all, ENOSPC straight from the page cache.</summary>
    Tmpfs,
}

/// <summary>
/// A real, small filesystem mounted in a temp folder, so that a test can fill it for real (ENOSPC from the kernel, not a
/// simulated device). Mounting needs root; where it is impossible the test is ignored with the reason, never passed.
/// </summary>
internal sealed class SmallFilesystem : IDisposable
{
    private readonly string _root;

    private SmallFilesystem(string root, string mountPoint, FilesystemKind kind)
    {
        _root = root;
        MountPoint = mountPoint;
        Kind = kind;
    }

    public string MountPoint { get; }

    public FilesystemKind Kind { get; }

    /// <summary>The bytes an unprivileged writer can still take (statvfs f_bavail).</summary>
    public long AvailableBytes => new DriveInfo(MountPoint).AvailableFreeSpace;

    /// <summary>Mounts a filesystem of <paramref name="megabytes"/> MiB, or ignores the calling test when that is impossible here.</summary>
    public static SmallFilesystem Mount(FilesystemKind kind, int megabytes)
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Ignore("mounting a small filesystem needs Linux");
        }

        if (Environment.UserName != "root")
        {
            Assert.Ignore($"mounting a small filesystem needs root (this runs as {Environment.UserName}); CI runs as root");
        }

        var root = Directory.CreateTempSubdirectory("miniqueue-fs-").FullName;
        var mountPoint = Path.Combine(root, "mnt");
        Directory.CreateDirectory(mountPoint);
        string? problem;
        if (kind == FilesystemKind.Ext4)
        {
            var image = Path.Combine(root, "fs.img");
            using (var file = File.Create(image))
            {
                file.SetLength(megabytes * 1024L * 1024);
            }

            // No journal-less tricks: the default ext4 a user would make, 4 KiB blocks, lazy init off so that the kernel does
            // not write the inode tables in the background while the test measures free space.
            problem = Run("mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0", image)
                ?? Run("mount", "-o", "loop", image, mountPoint);
        }
        else
        {
            problem = Run("mount", "-t", "tmpfs", "-o", $"size={megabytes}m,mode=0755", "tmpfs", mountPoint);
        }

        if (problem is not null)
        {
            TryDelete(root);
            Assert.Ignore($"could not mount a {megabytes} MiB {kind} filesystem here: {problem}");
        }

        return new SmallFilesystem(root, mountPoint, kind);
    }

    /// <summary>
    /// Fills the filesystem with a file of its own until at most <paramref name="leaveBytes"/> are available, the way
    /// another program on the same disk would. Returns the file; delete it to give the space back.
    /// </summary>
    public string Fill(long leaveBytes = 0)
    {
        var path = Path.Combine(MountPoint, $"filler-{Guid.NewGuid():N}");
        var chunk = new byte[64 * 1024];
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 0, FileOptions.None);
        try
        {
            while (AvailableBytes > leaveBytes)
            {
                var room = AvailableBytes - leaveBytes;
                file.Write(chunk, 0, (int)Math.Min(chunk.Length, Math.Max(4096, room)));
                file.Flush(flushToDisk: true);
            }
        }
        catch (IOException)
        {
            // Full: exactly what was wanted.
        }

        return path;
    }

    public void Dispose()
    {
        // The mount may still be busy for a moment after a child process was killed; a lazy unmount detaches it anyway.
        if (Run("umount", MountPoint) is not null)
        {
            Run("umount", "-l", MountPoint);
        }

        TryDelete(_root);
    }

    private static void TryDelete(string path)
    {
        try
        {
            Directory.Delete(path, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Runs a command; null when it succeeded, else what went wrong.</summary>
    private static string? Run(string program, params string[] arguments)
    {
        // mkfs and mount live in /sbin or /usr/sbin, which a non-login PATH may lack.
        var found = new[] { "/usr/sbin", "/sbin", "/usr/bin", "/bin" }.Select(folder => Path.Combine(folder, program)).FirstOrDefault(File.Exists);
        var start = new ProcessStartInfo(found ?? program) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        try
        {
            using var process = Process.Start(start)!;
            var error = process.StandardError.ReadToEndAsync();
            process.StandardOutput.ReadToEnd();
            if (!process.WaitForExit(TestSupport.Bound))
            {
                process.Kill();
                return $"{program} did not finish";
            }

            return process.ExitCode == 0 ? null : $"{program} exited with {process.ExitCode}: {error.Result.Trim()}";
        }
        catch (System.ComponentModel.Win32Exception exception)
        {
            return $"{program} could not be started: {exception.Message}";
        }
    }
}
