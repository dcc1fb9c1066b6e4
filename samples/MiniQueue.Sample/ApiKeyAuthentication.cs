using System.Security.Claims;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace Shop;

/// <summary>The API keys the shop knows, from configuration: each key names a user and the user's roles.</summary>
public sealed class ApiKeyAuthenticationOptions : AuthenticationSchemeOptions
{
    public Dictionary<string, ApiKeyUser> Keys { get; set; } = [];
}

public sealed class ApiKeyUser
{
    public string Name { get; set; } = "";

    public string[] Roles { get; set; } = [];
}

/// <summary>The shop's authentication: a known key in the <c>X-Api-Key</c> header.</summary>
public sealed class ApiKeyAuthentication(IOptionsMonitor<ApiKeyAuthenticationOptions> options, ILoggerFactory logger, UrlEncoder encoder)
    : AuthenticationHandler<ApiKeyAuthenticationOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    public const string Header = "X-Api-Key";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var key = Request.Headers[Header].ToString();
        if (key.Length == 0)
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }

        if (!Options.Keys.TryGetValue(key, out var user))
        {
            return Task.FromResult(AuthenticateResult.Fail("Unknown API key."));
        }

        var claims = user.Roles.Select(role => new Claim(ClaimTypes.Role, role)).Prepend(new Claim(ClaimTypes.Name, user.Name));
        var principal = new ClaimsPrincipal(new ClaimsIdentity(claims, SchemeName));
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(principal, SchemeName)));
    }
}
