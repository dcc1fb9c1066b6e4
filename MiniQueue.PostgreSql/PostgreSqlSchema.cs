using Npgsql;

namespace MiniQueue.PostgreSql;

/// <summary>
/// The tables of shared mode, created and migrated by MiniQueue itself: each migration runs once, in order, in one
/// transaction under an advisory lock, so several processes may start at once on a new database.
/// </summary>
/// <remarks>
/// <c>miniqueue_messages</c> holds every message not yet acknowledged. Its delivery order within a topic is
/// <c>(cls, due, seq)</c>: class 0 are NACKed messages (the latest NACK first: <c>seq</c> is minus a sequence number),
/// class 1 delayed ones (earliest due first, ties in DACK order; only those due take part), class 2 the FIFO ones (in
/// publish or BACK order). A held message has a <c>hold</c> (the delivery, named by a settle) and a <c>holder</c> (the
/// process, whose heartbeat in <c>miniqueue_processes</c> keeps its holds alive).
/// </remarks>
internal static class PostgreSqlSchema
{
    /// <summary>An arbitrary key for pg_advisory_xact_lock: the migrations of MiniQueue's schema.</summary>
    private const long MigrationLock = 0x4D51_5343_4845_4D41;

    /// <summary>The migrations, in order; version N is the Nth.</summary>
    private static readonly string[] s_migrations =
    [
        """
        CREATE SEQUENCE miniqueue_seq;
        CREATE TABLE miniqueue_messages (
            id bigint PRIMARY KEY,
            topic text NOT NULL,
            body bytea NOT NULL,
            cls smallint NOT NULL,
            due timestamptz,
            seq bigint NOT NULL,
            dack_count integer NOT NULL DEFAULT 0,
            deliveries integer NOT NULL DEFAULT 0,
            holder uuid,
            hold uuid,
            lease_until timestamptz
        );
        CREATE INDEX miniqueue_messages_next ON miniqueue_messages (topic, cls, due, seq) WHERE hold IS NULL;
        CREATE INDEX miniqueue_messages_holder ON miniqueue_messages (holder) WHERE holder IS NOT NULL;
        CREATE TABLE miniqueue_topics (name text PRIMARY KEY);
        CREATE TABLE miniqueue_processes (id uuid PRIMARY KEY, beat timestamptz NOT NULL);
        CREATE TABLE miniqueue_keys (
            topic text NOT NULL,
            key bytea NOT NULL,
            expires timestamptz NOT NULL,
            PRIMARY KEY (topic, key)
        );
        """,
        // 2: a take (which sets hold, holder and deliveries) is a HOT update: no index covers a column it changes (unless
        // the topic has a lease), and pages keep room for the new row version. The take's index holds held rows too (a
        // take skips them; there are at most as many as consumers). A lease that must be returned is found by its index;
        // the holds of a dead process by a scan, which runs only when a process died.
        """
        DROP INDEX miniqueue_messages_holder;
        DROP INDEX miniqueue_messages_next;
        CREATE INDEX miniqueue_messages_next ON miniqueue_messages (topic, cls, due, seq);
        CREATE INDEX miniqueue_messages_lease ON miniqueue_messages (lease_until) WHERE lease_until IS NOT NULL;
        ALTER TABLE miniqueue_messages SET (fillfactor = 70);
        """,
        // 3: each process's consumers per topic, so that a topic's stats count every process's; a process's rows go
        // with its row (when it stops, or is found dead).
        """
        CREATE TABLE miniqueue_consumers (
            process uuid NOT NULL REFERENCES miniqueue_processes (id) ON DELETE CASCADE,
            topic text NOT NULL,
            count integer NOT NULL,
            PRIMARY KEY (process, topic)
        );
        """,
    ];

    /// <summary>The schema version this code writes.</summary>
    public static int Version => s_migrations.Length;

    /// <summary>Creates or migrates the schema; refuses a database migrated by a newer version.</summary>
    public static Task MigrateAsync(NpgsqlDataSource database, CancellationToken cancellationToken) =>
        MigrateAsync(database, Version, cancellationToken);

    /// <summary>Migrates the schema up to <paramref name="version"/> (tests start from an older one).</summary>
    internal static async Task MigrateAsync(NpgsqlDataSource database, int version, CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using (var command = new NpgsqlCommand(
            $"SELECT pg_advisory_xact_lock({MigrationLock}); CREATE TABLE IF NOT EXISTS miniqueue_schema (version integer NOT NULL);",
            connection, transaction))
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        int current;
        await using (var command = new NpgsqlCommand("SELECT COALESCE(max(version), 0) FROM miniqueue_schema", connection, transaction))
        {
            current = (int)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        if (current > Version)
        {
            throw new MiniQueueStoreException(
                $"The database's MiniQueue schema is version {current}, newer than this MiniQueue's ({Version}): upgrade MiniQueue.");
        }

        for (var next = current + 1; next <= version; next++)
        {
            await using var command = new NpgsqlCommand(
                s_migrations[next - 1] + $"; INSERT INTO miniqueue_schema (version) VALUES ({next});", connection, transaction);
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }
}
