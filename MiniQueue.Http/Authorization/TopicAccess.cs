using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MiniQueue.Http.Protocol;

namespace MiniQueue.Http.Authorization;

/// <summary>
/// Per-topic authorization of the protocol's requests (<see cref="MiniQueueHttpOptions.AuthorizeTopics"/>): asks
/// ASP.NET Core's <see cref="IAuthorizationService"/> whether the request's user may do the operation on the topic, and
/// answers a refusal as the application's authentication says (401 with its challenge for a user it does not know,
/// 403 for one it knows), or, without an authentication scheme, with 401 or 403 and a protocol error line.
/// </summary>
internal sealed class TopicAccess
{
    private readonly IOptions<MiniQueueHttpOptions> _options;
    private readonly ILogger _logger;

    public TopicAccess(IOptions<MiniQueueHttpOptions> options, ILoggerFactory loggerFactory)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        _options = options;
        _logger = loggerFactory.CreateLogger(HttpLog.Category);
    }

    /// <summary>Whether requests are authorized per topic at all (when not, every request may do everything).</summary>
    public bool Enabled => _options.Value.AuthorizeTopics;

    /// <summary>
    /// True when the request may do <paramref name="operation"/> on <paramref name="topic"/>; otherwise answers it
    /// (401 or 403) and returns false.
    /// </summary>
    public async ValueTask<bool> AllowAsync(HttpContext context, string topic, OperationAuthorizationRequirement operation)
    {
        if (!Enabled)
        {
            return true;
        }

        var services = context.RequestServices;
        var authorization = services.GetService<IAuthorizationService>()
            ?? throw new InvalidOperationException(
                $"{nameof(MiniQueueHttpOptions)}.{nameof(MiniQueueHttpOptions.AuthorizeTopics)} needs ASP.NET Core authorization: call services.AddAuthorization().");
        var result = await authorization.AuthorizeAsync(context.User, new MiniQueueTopic(topic), operation).ConfigureAwait(false);
        if (result.Succeeded)
        {
            return true;
        }

        var known = context.User.Identity?.IsAuthenticated == true;
        HttpLog.Refused(_logger, operation.Name, topic, context.User.Identity?.Name ?? "(anonymous)", known ? 403 : 401);
        var schemes = services.GetService<IAuthenticationSchemeProvider>();
        if (known)
        {
            if (schemes is not null && await schemes.GetDefaultForbidSchemeAsync().ConfigureAwait(false) is not null)
            {
                await context.ForbidAsync().ConfigureAwait(false);
            }
            else
            {
                await ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status403Forbidden, ProtocolErrors.Forbidden).ConfigureAwait(false);
            }
        }
        else if (schemes is not null && await schemes.GetDefaultChallengeSchemeAsync().ConfigureAwait(false) is not null)
        {
            await context.ChallengeAsync().ConfigureAwait(false);
        }
        else
        {
            await ProtocolErrors.WriteResponseAsync(context, StatusCodes.Status401Unauthorized, ProtocolErrors.Unauthorized).ConfigureAwait(false);
        }

        return false;
    }
}
