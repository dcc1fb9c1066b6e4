using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MiniQueue.Client;

namespace MiniQueue.Samples;

/// <summary>
/// What every example shares: the client made from <c>--url</c> and <c>--cacert</c>, Ctrl+C, and errors reported
/// as one clear line and an exit code (2 for a bad command line, 1 for anything else, 130 when stopped with Ctrl+C)
/// instead of a stack trace.
/// </summary>
internal static class Example
{
    /// <summary>The usage lines of the options every example takes.</summary>
    public const string CommonUsage = """
          --url URL        the server (default https://localhost:8080)
          --cacert FILE    trust only the certificate(s) in this PEM file, such as the one the standalone host makes
                           in <db>/tls/localhost.pem (default: the system's trusted CAs)
          -h, --help       show this help
        """;

    /// <summary>
    /// Parses the command line, then runs <paramref name="run"/> with a token that Ctrl+C cancels (a second Ctrl+C
    /// ends the process at once), and turns what can go wrong into a message on stderr and an exit code.
    /// </summary>
    public static async Task<int> RunAsync(
        string[] args,
        string usage,
        IReadOnlyCollection<string> options,
        IReadOnlyCollection<string> flags,
        Func<CommandLine, CancellationToken, Task<int>> run)
    {
        CommandLine command;
        try
        {
            command = CommandLine.Parse(args, options, flags);
        }
        catch (ArgumentException exception)
        {
            return UsageError(exception.Message);
        }

        if (command.IsHelp)
        {
            Console.WriteLine(usage.TrimEnd());
            return 0;
        }

        using var stop = new CancellationTokenSource();
        void OnCancelKeyPress(object? sender, ConsoleCancelEventArgs e)
        {
            if (!stop.IsCancellationRequested)
            {
                e.Cancel = true;
                Console.Error.WriteLine("stopping (press Ctrl+C again to quit at once)");
                stop.Cancel();
            }
        }

        Console.CancelKeyPress += OnCancelKeyPress;
        try
        {
            return await run(command, stop.Token);
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            Console.Error.WriteLine("stopped");
            return 130;
        }
        catch (ArgumentException exception)
        {
            return UsageError(exception.Message);
        }
        catch (MiniQueueClientException exception)
        {
            return Error(exception.Message);
        }
        catch (HttpRequestException exception) when (exception.InnerException is AuthenticationException)
        {
            return Error($"the server's certificate is not trusted: {Describe(exception)}\n"
                + "  (pass --cacert with the server's certificate, e.g. --cacert data/tls/localhost.pem for the standalone host)");
        }
        catch (HttpRequestException exception)
        {
            return Error($"cannot talk to the server: {Describe(exception)}");
        }
        catch (OperationCanceledException)
        {
            return Error("the server did not answer in time");
        }
        catch (Exception exception)
        {
            // Anything else is a fault: still one line, not a stack trace.
            return Error($"{exception.GetType().Name}: {Describe(exception)}");
        }
        finally
        {
            Console.CancelKeyPress -= OnCancelKeyPress;
        }
    }

    /// <summary>A client of the server named by <c>--url</c>, trusting what <c>--cacert</c> names.</summary>
    public static MiniQueueClient CreateClient(CommandLine command, int connections = 1)
    {
        var url = command.Get("url", "https://localhost:8080");
        if (!Uri.TryCreate(url, UriKind.Absolute, out var baseAddress) || baseAddress.Scheme is not ("https" or "http"))
        {
            throw new ArgumentException($"--url must be an http or https address such as https://localhost:8080, not '{url}'");
        }

        var options = new MiniQueueClientOptions { BaseAddress = baseAddress, Connections = connections };
        if (command.Get("cacert") is { } path)
        {
            options.ServerCertificateValidation = TrustOnly(LoadCertificates(path));
        }

        return new MiniQueueClient(options);
    }

    private static X509Certificate2Collection LoadCertificates(string path)
    {
        var certificates = new X509Certificate2Collection();
        try
        {
            certificates.ImportFromPemFile(path);
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw new ArgumentException($"--cacert: cannot read a certificate from '{path}': {exception.Message}");
        }

        return certificates.Count > 0 ? certificates : throw new ArgumentException($"--cacert: '{path}' holds no PEM certificate");
    }

    /// <summary>
    /// Accepts a server certificate that is one of <paramref name="trusted"/> or was issued by one of them, for the
    /// name the client asked for (like curl's <c>--cacert</c>); the system's CAs play no part.
    /// </summary>
    private static RemoteCertificateValidationCallback TrustOnly(X509Certificate2Collection trusted) => (_, certificate, serverChain, errors) =>
    {
        if (certificate is not X509Certificate2 presented
            || (errors & (SslPolicyErrors.RemoteCertificateNotAvailable | SslPolicyErrors.RemoteCertificateNameMismatch)) != 0)
        {
            return false;
        }

        if (trusted.Any(candidate => candidate.RawDataMemory.Span.SequenceEqual(presented.RawDataMemory.Span)))
        {
            return true;
        }

        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(trusted);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (serverChain is not null)
        {
            foreach (var element in serverChain.ChainElements)
            {
                chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            }
        }

        return chain.Build(presented);
    };

    private static int UsageError(string message)
    {
        Console.Error.WriteLine($"error: {message}");
        Console.Error.WriteLine("run with --help to see the options");
        return 2;
    }

    private static int Error(string message)
    {
        Console.Error.WriteLine($"error: {message}");
        return 1;
    }

    /// <summary>An exception's message and those of its inner exceptions, the most specific last.</summary>
    private static string Describe(Exception exception)
    {
        var messages = new List<string>();
        for (Exception? current = exception; current is not null; current = current.InnerException)
        {
            messages.Add(current.Message);
        }

        return string.Join(" -> ", messages);
    }
}
