using MiniQueue.Engine;

namespace MiniQueue.Storage;

// The background care of the log: reclaiming log space, and coming back after a device failure.
internal sealed partial class LogStorage
{
    /// <summary>Copy live bodies forward only while they are at most this fraction of the log space it frees.</summary>
    private const double MaxCopiedFraction = 0.25;

    private static readonly TimeSpan s_firstRetry = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan s_lastRetry = TimeSpan.FromSeconds(5);

    /// <summary>One compaction or store recovery at a time.</summary>
    private readonly SemaphoreSlim _maintenanceGate = new(1, 1);

    /// <summary>How often the engine looks at the disk again, and tries to free space, while publishes are refused for lack of it.</summary>
    private static readonly TimeSpan s_lowSpaceEvery = TimeSpan.FromMilliseconds(250);

    private async Task MaintainAsync()
    {
        var retry = s_firstRetry;
        try
        {
            while (await NextRoundAsync().ConfigureAwait(false))
            {
                if (Store.IsFaulted)
                {
                    bool recovered;
                    await _maintenanceGate.WaitAsync(_stopping.Token).ConfigureAwait(false);
                    try
                    {
                        recovered = await TryRecoverStoreAsync().ConfigureAwait(false);
                    }
                    finally
                    {
                        _maintenanceGate.Release();
                    }

                    if (recovered)
                    {
                        retry = s_firstRetry;
                    }
                    else
                    {
                        // Real time, not the engine's clock: this waits for a disk, not for a message's due time.
                        await Task.Delay(retry, _stopping.Token).ConfigureAwait(false);
                        retry = TimeSpan.FromTicks(Math.Min(retry.Ticks * 2, s_lastRetry.Ticks));
                    }

                    continue;
                }

                if (Space.Enabled)
                {
                    try
                    {
                        await CompactAsync(_stopping.Token).ConfigureAwait(false);
                    }
                    catch (Exception exception) when (exception is not OperationCanceledException)
                    {
                        // A bug here must not stop the engine's care of its store; the next segment tries again.
                        EngineLog.CompactionFailed(_logger, exception);
                    }
                }

                if (Store.IsLowOnSpace)
                {
                    // Truncation gives space back at the next commit; then publishes are taken again.
                    Store.RefreshSpace();
                }
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// Waits for the next round of maintenance: a request (a new log segment, a failure), or, while the store is faulted
    /// or short of space, the next look at it (consumers free space without starting segments). False once the engine stops.
    /// </summary>
    private async ValueTask<bool> NextRoundAsync()
    {
        var requests = _maintenanceRequests.Reader;
        if (requests.TryRead(out _) || Store.IsFaulted)
        {
            return true;
        }

        if (!Store.IsLowOnSpace)
        {
            if (!await requests.WaitToReadAsync(_stopping.Token).ConfigureAwait(false))
            {
                return false;
            }

            requests.TryRead(out _);
            return true;
        }

        using var tick = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
        tick.CancelAfter(s_lowSpaceEvery);
        try
        {
            if (await requests.WaitToReadAsync(tick.Token).ConfigureAwait(false))
            {
                requests.TryRead(out _);
                return true;
            }

            return false;
        }
        catch (OperationCanceledException) when (!_stopping.IsCancellationRequested)
        {
            return true;
        }
    }

    /// <summary>
    /// Frees the oldest log segments when the live bodies in them are few: copies those bodies forward, writes a
    /// checkpoint of every topic that had one, waits for it to be durable, then truncates. Returns the log's new start.
    /// </summary>
    internal async ValueTask<long> CompactAsync(CancellationToken cancellationToken = default)
    {
        await _maintenanceGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await CompactOnceAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            _maintenanceGate.Release();
        }
    }

    private async ValueTask<long> CompactOnceAsync(CancellationToken cancellationToken)
    {
        var begin = Store.BeginAddress;
        var tail = Store.TailAddress;

        // Only committed bodies can be read back, so the truncation point must be in the durable part: wait for the
        // commit in flight if it is not yet.
        // Normally the start moves by whole segments (their files are deleted). Short of space, it moves by pages too:
        // a queue smaller than a segment must give space back as well, or publishes would stay refused for good.
        var alignment = Store.IsLowOnSpace ? Space.PageSize : Space.SegmentSize;

        // What needs no copying at all (the messages there are all gone), and how far copying a few could go. Copying
        // costs the bodies and a checkpoint of every message of their topics (CheckpointEntry.Size bytes each, written
        // while the topic waits): it is worth it only while that is a small part of what it frees, and while the disk's
        // reserve can pay for it. A consumer draining a long topic in order frees its segments without any of this (a
        // checkpoint of a topic of 600,000 messages is 20 MB, written while its consumers wait).
        // Copying is for a start that something pins (a message held or delayed for long): while the start can move
        // without it, it does.
        var point = Space.ChooseTruncationPoint(begin, tail, maxCopiedFraction: 0, alignment);
        var further = point > begin ? point : Space.ChooseTruncationPoint(begin, tail, MaxCopiedFraction, alignment);
        if (further > point)
        {
            var cost = MaintenanceCost(further);
            if (cost <= MaxCopiedFraction * (further - begin) && Store.CanSpend(cost))
            {
                point = further;
            }
        }

        if (point <= begin)
        {
            return begin;
        }

        try
        {
            if (!Store.IsCommitted(point - 1))
            {
                await Store.WaitForCommitAsync(point - 1, cancellationToken).ConfigureAwait(false);
            }

            var written = await CheckpointTopicsAsync(point, LostRange.None, cancellationToken).ConfigureAwait(false);
            if (written is not { } last)
            {
                return begin;
            }

            if (last >= 0)
            {
                await Store.WaitForCommitAsync(last, cancellationToken).ConfigureAwait(false);
            }

            Store.TruncateUntil(point);
            EngineLog.Compacted(_logger, begin, point);
            return point;
        }
        catch (MiniQueueStoreException exception)
        {
            EngineLog.CompactionFailed(_logger, exception);
            RequestMaintenance();
            return begin;
        }
    }

    /// <summary>
    /// About how many bytes a compaction up to <paramref name="point"/> writes: the bodies it copies forward and the
    /// checkpoints of their topics (every message of such a topic, at <see cref="CheckpointEntry.Size"/> bytes each).
    /// </summary>
    private long MaintenanceCost(long point)
    {
        long cost = Space.LiveBytesBefore(point);
        foreach (var topic in _engine.Topics)
        {
            if (topic.HasBodiesBefore(point))
            {
                cost += CheckpointWriter.Footprint(Store, topic.NameUtf8.Length, topic.CountAll());
            }
        }

        return cost;
    }

    /// <summary>Reopens a failed store and writes every topic's state again, since the records after its last commit are gone.</summary>
    private async ValueTask<bool> TryRecoverStoreAsync()
    {
        // Messages published from now on are new; older ones whose records lay past the reopened log's tail are lost
        // (new records reuse those addresses, so the id tells them apart).
        var firstNewId = _engine.LastMessageId + 1;
        if (!await Store.TryRecoverAsync(_stopping.Token).ConfigureAwait(false))
        {
            return false;
        }

        // The reopened log takes records again, but what the old one lost (ACKs made while it failed, among them) is
        // only in memory until these checkpoints are durable: an engine stopping now waits for them (one commit), as
        // stopping here would lose acknowledged work.
        var lost = new LostRange(Store.TailAddress, firstNewId);
        try
        {
            var written = await CheckpointTopicsAsync(long.MinValue, lost, CancellationToken.None, everyTopic: true).ConfigureAwait(false);
            if (written is { } address and >= 0)
            {
                await Store.WaitForCommitAsync(address, CancellationToken.None).ConfigureAwait(false);
            }

            return written is not null;
        }
        catch (MiniQueueStoreException exception)
        {
            EngineLog.CompactionFailed(_logger, exception);
            return false;
        }
    }

    /// <summary>
    /// Checkpoints the topics with bodies before <paramref name="relocateBelow"/> or in the <paramref name="lost"/> range
    /// (or all of them); returns the address of the last record written (-1 when none was needed), or null when a topic
    /// could not be checkpointed.
    /// </summary>
    private async ValueTask<long?> CheckpointTopicsAsync(long relocateBelow, LostRange lost, CancellationToken cancellationToken, bool everyTopic = false)
    {
        long last = -1;
        foreach (var topic in _engine.Topics)
        {
            if (!everyTopic && !topic.HasBodiesBefore(relocateBelow))
            {
                continue;
            }

            // Read the bodies that are not in memory without holding the topic's lock, then write under it.
            var bodies = new Dictionary<long, ReadOnlyMemory<byte>>();
            foreach (var entry in topic.CollectBodiesToRead(relocateBelow))
            {
                bodies[entry.Id] = await MessageBodies.ReadAsync(Store, entry.Address, entry.Id, topic.NameUtf8.Length, entry.Length, cancellationToken).ConfigureAwait(false);
            }

            // A checkpoint can be larger than the log's write buffer; no commit may wait for room in it meanwhile.
            bool written;
            long end;
            int dropped;
            using (await Store.HoldCommitsAsync(cancellationToken).ConfigureAwait(false))
            {
                written = topic.TryWriteCheckpoint(_engine.NextMessageId(), relocateBelow, lost, bodies, out end, out dropped);
            }

            if (!written)
            {
                return null;
            }

            if (dropped > 0)
            {
                EngineLog.MessagesLost(_logger, dropped, topic.Name);
            }

            last = Math.Max(last, end);
        }

        return last;
    }
}
