using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace MiniQueue.Host.Security;

/// <summary>
/// The server's TLS certificate from its PEM files (<c>-cert</c>, <c>-key</c>), loaded again when either changes, so
/// that a renewed certificate is served to new connections without a restart. A pair that cannot be loaded (say, the
/// certificate written before its key) is logged and the one before stays in use until the pair loads.
/// </summary>
internal sealed class CertificateFiles : IDisposable
{
    private readonly string _certificatePath;
    private readonly string _keyPath;
    private readonly FileWatch _watch;
    private ILogger? _logger;
    private volatile X509Certificate2 _current;

    public CertificateFiles(X509Certificate2 certificate, string certificatePath, string keyPath)
    {
        _current = certificate;
        _certificatePath = Path.GetFullPath(certificatePath);
        _keyPath = Path.GetFullPath(keyPath);
        _watch = new FileWatch([_certificatePath, _keyPath], Reload);
    }

    /// <summary>The certificate new connections get.</summary>
    public X509Certificate2 Current => _current;

    /// <summary>Where reloads are logged (the host's logger exists only once the host is built).</summary>
    public void LogTo(ILogger logger) => _logger = logger;

    private void Reload()
    {
        try
        {
            _current = X509Certificate2.CreateFromPemFile(_certificatePath, _keyPath);
            if (_logger is not null)
            {
                HostLog.CertificateReloaded(_logger, _certificatePath);
            }
        }
        catch (Exception exception) when (exception is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            if (_logger is not null)
            {
                HostLog.CertificateRefused(_logger, _certificatePath, exception.Message);
            }
        }
    }

    public void Dispose() => _watch.Dispose();
}
