namespace MiniQueue;

/// <summary>
/// The store could not take or give back a record (disk full, a failing device, a store that is shutting down).
/// A publish that fails with it was not acknowledged: the message may be retried.
/// </summary>
public sealed class MiniQueueStoreException : Exception
{
    /// <summary>Creates the exception.</summary>
    public MiniQueueStoreException()
        : base("The message store failed.")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    public MiniQueueStoreException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the store's own error.</summary>
    public MiniQueueStoreException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
