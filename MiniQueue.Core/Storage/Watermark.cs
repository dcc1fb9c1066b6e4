using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace MiniQueue.Storage;

/// <summary>
/// A lower bound of the committed log's end, kept in the file <c>committed</c> so that an open can tell a log that lost
/// its end (damage) from one that is whole: FasterLog's recovery alone stops silently at the first damaged record.
/// </summary>
/// <remarks>
/// The file has two 4 KiB slots, written in turn in place (no new blocks, so it works on a full disk) and flushed to the
/// disk; each holds a sequence number, the address and a check. A write torn by a power loss spoils at most the slot it
/// was writing, and the other slot still holds the previous bound. A 16-byte file of an older version (the address and
/// its complement) is read as one slot.
/// </remarks>
internal sealed class Watermark : IDisposable
{
    public const string FileName = "committed";

    private const int SlotBytes = 4096;
    private const int UsedBytes = 32;
    private const ulong Magic = 0x4B52414D52544157; // "WATRMARK"

    private readonly string _path;
    private readonly SafeFileHandle _file;
    private readonly byte[] _buffer = new byte[UsedBytes];
    private long _sequence;
    private long _writtenAt = Environment.TickCount64;

    public Watermark(string directory)
    {
        _path = Path.Combine(directory, FileName);
        _file = File.OpenHandle(_path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        try
        {
            (_sequence, Address) = ReadSlots();
            if (RandomAccess.GetLength(_file) < 2 * SlotBytes)
            {
                // Allocate both slots now, while there is room, so that later writes never need a new block.
                var slots = new byte[2 * SlotBytes];
                if (Address is { } address)
                {
                    Fill(slots, 0, ++_sequence, address);
                    Fill(slots, SlotBytes, ++_sequence, address);
                }

                RandomAccess.Write(_file, slots, 0);
                RandomAccess.FlushToDisk(_file);
            }
        }
        catch
        {
            _file.Dispose();
            throw;
        }
    }

    /// <summary>The bound the file held when it was opened (null: none yet), then the last one written.</summary>
    public long? Address { get; private set; }

    public TimeSpan Age => TimeSpan.FromMilliseconds(Environment.TickCount64 - _writtenAt);

    /// <summary>Refuses a log that recovered to less than the bound: something inside its committed part is damaged.</summary>
    public void ThrowIfAbove(long recoveredUntil, string directory)
    {
        if (Address is { } address && recoveredUntil < address)
        {
            throw new MiniQueueStoreException(
                $"The log in {directory} is damaged: it recovers only up to address {recoveredUntil}, but it was committed up to at least " +
                $"{address}. MiniQueue does not start from a partial log.");
        }
    }

    /// <summary>Records a new bound in the older slot and flushes it to the disk.</summary>
    /// <exception cref="IOException">The write failed; the file still holds the previous bound.</exception>
    public void Write(long committedUntil)
    {
        var sequence = _sequence + 1;
        Array.Clear(_buffer);
        Fill(_buffer, 0, sequence, committedUntil);
        RandomAccess.Write(_file, _buffer, (sequence % 2) * SlotBytes);
        RandomAccess.FlushToDisk(_file);
        _sequence = sequence;
        Address = committedUntil;
        _writtenAt = Environment.TickCount64;
    }

    public void Dispose() => _file.Dispose();

    private static void Fill(Span<byte> destination, int offset, long sequence, long address)
    {
        var slot = destination.Slice(offset, UsedBytes);
        BinaryPrimitives.WriteUInt64LittleEndian(slot, Magic);
        BinaryPrimitives.WriteInt64LittleEndian(slot[8..], sequence);
        BinaryPrimitives.WriteInt64LittleEndian(slot[16..], address);
        BinaryPrimitives.WriteInt64LittleEndian(slot[24..], ~(sequence ^ address));
    }

    /// <summary>The newest whole slot's sequence and address.</summary>
    private (long Sequence, long? Address) ReadSlots()
    {
        var length = RandomAccess.GetLength(_file);
        var buffer = new byte[UsedBytes];
        if (length == 16)
        {
            // The older format: the address and its complement.
            RandomAccess.Read(_file, buffer.AsSpan(0, 16), 0);
            var address = BinaryPrimitives.ReadInt64LittleEndian(buffer);
            return ~address == BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan(8)) ? (0, address) : (0, null);
        }

        long bestSequence = 0;
        long? best = null;
        for (var slot = 0; slot < 2; slot++)
        {
            if (RandomAccess.Read(_file, buffer, slot * SlotBytes) != UsedBytes || BinaryPrimitives.ReadUInt64LittleEndian(buffer) != Magic)
            {
                continue;
            }

            var sequence = BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan(8));
            var address = BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan(16));
            if (BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan(24)) == ~(sequence ^ address) && sequence > bestSequence)
            {
                (bestSequence, best) = (sequence, address);
            }
        }

        if (best is null && length > 0 && !IsAllZero(length))
        {
            throw new MiniQueueStoreException($"{_path} is damaged in both of its slots, so it cannot tell whether the log is whole; it is not opened.");
        }

        return (bestSequence, best);
    }

    private bool IsAllZero(long length)
    {
        var bytes = new byte[Math.Min(length, 2 * SlotBytes)];
        RandomAccess.Read(_file, bytes, 0);
        return !bytes.AsSpan().ContainsAnyExcept((byte)0);
    }
}
