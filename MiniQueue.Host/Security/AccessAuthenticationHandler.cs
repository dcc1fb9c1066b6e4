using System.Security.Claims;
using System.Security.Cryptography.X509Certificates;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace MiniQueue.Host.Security;

/// <summary>
/// The host's authentication scheme with <c>-auth</c>: a request is the identity of the access file whose token it
/// carries (<c>Authorization: Bearer &lt;token&gt;</c>) or, with <c>-client-ca</c>, whose name is the common name of its
/// TLS client certificate (checked against the CA during the handshake). A missing or unknown credential is answered
/// 401 with <c>WWW-Authenticate: Bearer</c> and a protocol error line; a known one without the permission, 403.
/// </summary>
internal sealed class AccessAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder, AccessControl access)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "MiniQueue";

    private const string Bearer = "Bearer ";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var file = access.Current;
        var header = Request.Headers.Authorization;
        if (header.Count > 0)
        {
            var value = header.Count == 1 ? header[0] : null;
            if (value is null || !value.StartsWith(Bearer, StringComparison.OrdinalIgnoreCase))
            {
                return Task.FromResult(AuthenticateResult.Fail("the Authorization header is not one bearer token"));
            }

            return Task.FromResult(file.FindByToken(value.AsSpan(Bearer.Length).Trim()) is { } identity
                ? Success(identity, "Bearer")
                : AuthenticateResult.Fail("unknown token"));
        }

        if (Context.Connection.ClientCertificate is { } certificate)
        {
            var name = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
            return Task.FromResult(file.FindByName(name) is { } identity
                ? Success(identity, "Certificate")
                : AuthenticateResult.Fail($"the client certificate's name \"{name}\" is no identity of the access file"));
        }

        return Task.FromResult(AuthenticateResult.NoResult());
    }

    private static AuthenticateResult Success(Identity identity, string kind)
    {
        var principal = new ClaimsPrincipal(new ClaimsIdentity([new Claim(ClaimTypes.Name, identity.Name)], kind));
        return AuthenticateResult.Success(new AuthenticationTicket(principal, SchemeName));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        var result = await HandleAuthenticateOnceSafeAsync().ConfigureAwait(false);
        var reason = result.Failure?.Message ?? "no credentials";
        HostLog.Unauthenticated(Logger, Request.Path, Context.Connection.RemoteIpAddress, reason);
        Response.Headers.WWWAuthenticate = result.Failure is null ? "Bearer" : "Bearer error=\"invalid_token\"";
        await WriteErrorAsync(StatusCodes.Status401Unauthorized, "{\"error\":\"unauthorized\"}\n"u8.ToArray()).ConfigureAwait(false);
    }

    protected override Task HandleForbiddenAsync(AuthenticationProperties properties) =>
        WriteErrorAsync(StatusCodes.Status403Forbidden, "{\"error\":\"forbidden\"}\n"u8.ToArray());

    private async Task WriteErrorAsync(int status, byte[] line)
    {
        if (Response.HasStarted)
        {
            return;
        }

        Response.StatusCode = status;
        Response.ContentType = "application/json; charset=utf-8";
        Response.ContentLength = line.Length;
        await Response.Body.WriteAsync(line).ConfigureAwait(false);
    }
}
