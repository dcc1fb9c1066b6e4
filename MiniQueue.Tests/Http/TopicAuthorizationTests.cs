using System.Net;
using System.Security.Claims;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using MiniQueue.Http;

namespace MiniQueue.Tests.Http;

/// <summary>
/// Per-topic authorization for embedders (MiniQueueHttpOptions.AuthorizeTopics): ASP.NET Core's resource-based
/// authorization decides each request by its topic and operation; a refusal does nothing.
/// </summary>
[CancelAfter(60_000)]
public sealed class TopicAuthorizationTests
{
    /// <summary>Anyone may do anything on "public.*"; a user named "ops" may also purge "secret"; nothing else is allowed.</summary>
    private sealed class ExampleRules : AuthorizationHandler<OperationAuthorizationRequirement, MiniQueueTopic>
    {
        protected override Task HandleRequirementAsync(AuthorizationHandlerContext context, OperationAuthorizationRequirement requirement, MiniQueueTopic topic)
        {
            if (topic.Name.StartsWith("public.", StringComparison.Ordinal)
                || (context.User.Identity?.Name == "ops" && requirement == MiniQueueOperations.Purge && topic.Name == "secret"))
            {
                context.Succeed(requirement);
            }

            return Task.CompletedTask;
        }
    }

    private static Task<MiniQueueTestHost> StartAsync() => MiniQueueTestHost.StartAsync(
        static builder =>
        {
            builder.Services.Configure<MiniQueueHttpOptions>(static http => http.AuthorizeTopics = true);
            builder.Services.AddAuthorization();
            builder.Services.AddSingleton<IAuthorizationHandler, ExampleRules>();
        },
        static app =>
        {
            // A stand-in for the application's authentication: the header X-User names the user.
            app.Use(static (context, next) =>
            {
                if (context.Request.Headers["X-User"] is [{ } name])
                {
                    context.User = new ClaimsPrincipal(new ClaimsIdentity([new Claim(ClaimTypes.Name, name)], "test"));
                }

                return next(context);
            });
            app.MapMiniQueue("/mq");
        });

    private static async Task<(HttpStatusCode Status, string Body)> SendAsync(HttpClient client, HttpMethod method, string path, string? user = null)
    {
        using var request = new HttpRequestMessage(method, path) { Version = HttpVersion.Version20, Content = new StringContent("m") };
        if (user is not null)
        {
            request.Headers.Add("X-User", user);
        }

        using var response = await client.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    [Test]
    public async Task EachRequest_IsAuthorizedByItsTopicAndOperation_AndARefusalDoesNothing()
    {
        await using var host = await StartAsync();
        var client = host.CreateHttpClient();

        Assert.That((await SendAsync(client, HttpMethod.Post, "mq/publish/public.news")).Status, Is.EqualTo(HttpStatusCode.Created));
        Assert.That(await SendAsync(client, HttpMethod.Post, "mq/publish/secret"), Is.EqualTo((HttpStatusCode.Unauthorized, "{\"error\":\"unauthorized\"}\n")), "an anonymous user");
        Assert.That(await SendAsync(client, HttpMethod.Post, "mq/publish/secret", "alice"), Is.EqualTo((HttpStatusCode.Forbidden, "{\"error\":\"forbidden\"}\n")), "a known user");
        Assert.That((await SendAsync(client, HttpMethod.Post, "mq/subscribe/secret", "alice")).Status, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That((await SendAsync(client, HttpMethod.Post, "mq/redrive/secret", "ops")).Status, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That((await SendAsync(client, HttpMethod.Delete, "mq/public.news", "alice")).Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(host.Engine.GetTopics(), Is.EqualTo(new[] { "public.news" }), "no refused publish enqueued anything");

        await host.Engine.PublishAsync("secret", "kept");
        Assert.That((await SendAsync(client, HttpMethod.Delete, "mq/secret", "alice")).Status, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(host.Engine.GetStats("secret").Ready, Is.EqualTo(1), "the refused purge purged nothing");
        Assert.That((await SendAsync(client, HttpMethod.Delete, "mq/secret", "ops")).Status, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(host.Engine.GetStats("secret").Ready, Is.EqualTo(0));

        await using var stream = await RawConsumerStream.OpenAsync(client, "mq/subscribe/public.news");
        await host.Engine.PublishAsync("public.news", "hello");
        await stream.SendAsync("\"INIT\"\n");
        Assert.That(await stream.ReadLineAsync(), Is.EqualTo(RawConsumerStream.MessageLine("hello")), "an allowed subscribe streams as usual");
    }
}
