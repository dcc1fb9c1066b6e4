namespace MiniQueue.PostgreSql;

/// <summary>
/// Shared mode: opens a <see cref="MiniQueueEngine"/> whose queue lives in a PostgreSQL database, so that every process
/// opened on the same database serves one queue (publish on one, consume on another; consumers on all of them compete).
/// </summary>
/// <example>
/// <code>
/// await using var queue = await MiniQueuePostgreSql.OpenAsync("Host=db;Username=app;Password=...;Database=queue");
/// await queue.PublishAsync("orders", "hello"u8.ToArray());
/// </code>
/// </example>
public static class MiniQueuePostgreSql
{
    /// <summary>
    /// How long a process may stop beating (it beats every third of this) before the messages its consumers hold return
    /// to the front of their topics, to be delivered through the other processes.
    /// </summary>
    public static readonly TimeSpan DefaultProcessLease = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Opens the queue in the database <paramref name="connectionString"/> names (an Npgsql connection string), creating or
    /// migrating MiniQueue's tables there. <paramref name="options"/> set the topic policies, the size limit and the clock;
    /// <see cref="MiniQueueOptions.DataDirectory"/> and the durable store's settings do not apply.
    /// </summary>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    /// <exception cref="MiniQueueStoreException">The database cannot be reached, or its schema is newer than this MiniQueue's.</exception>
    public static async ValueTask<MiniQueueEngine> OpenAsync(
        string connectionString, MiniQueueOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        return MiniQueueEngine.Over(
            await PostgreSqlBackend.OpenAsync(connectionString, options ?? new MiniQueueOptions(), DefaultProcessLease, cancellationToken).ConfigureAwait(false));
    }

    /// <summary>Opens the queue with a process lease of <paramref name="processLease"/> (for tests).</summary>
    internal static async ValueTask<MiniQueueEngine> OpenAsync(
        string connectionString, MiniQueueOptions options, TimeSpan processLease, CancellationToken cancellationToken) =>
        MiniQueueEngine.Over(await PostgreSqlBackend.OpenAsync(connectionString, options, processLease, cancellationToken).ConfigureAwait(false));
}
