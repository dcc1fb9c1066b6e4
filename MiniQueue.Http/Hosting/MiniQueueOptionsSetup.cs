using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace MiniQueue.Http.Hosting;

/// <summary>
/// Binds <see cref="MiniQueueOptions"/> from the configuration section <c>MiniQueue</c> and
/// <see cref="MiniQueueHttpOptions"/> from <c>MiniQueue:Http</c>, when the application has a configuration.
/// </summary>
internal sealed class MiniQueueConfigurationSetup(IServiceProvider services) : IConfigureOptions<MiniQueueOptions>, IConfigureOptions<MiniQueueHttpOptions>
{
    public const string SectionName = "MiniQueue";
    public const string HttpSectionName = "MiniQueue:Http";

    public void Configure(MiniQueueOptions options) => services.GetService<IConfiguration>()?.GetSection(SectionName).Bind(options);

    public void Configure(MiniQueueHttpOptions options) => services.GetService<IConfiguration>()?.GetSection(HttpSectionName).Bind(options);
}

/// <summary>Fills the engine options that configuration cannot carry (the clock, logging, metrics) from the application's services.</summary>
internal sealed class MiniQueueOptionsPostSetup(IServiceProvider services) : IPostConfigureOptions<MiniQueueOptions>
{
    public void PostConfigure(string? name, MiniQueueOptions options)
    {
        // TimeProvider.System is the engine's default: an application that registers a TimeProvider (a FakeTimeProvider
        // in tests) means the queue to follow it.
        if (ReferenceEquals(options.TimeProvider, TimeProvider.System) && services.GetService<TimeProvider>() is { } time)
        {
            options.TimeProvider = time;
        }

        options.LoggerFactory ??= services.GetService<ILoggerFactory>();
        options.MeterFactory ??= services.GetService<IMeterFactory>();
    }
}

/// <summary>Turns the options' own <c>Validate()</c> into options validation, so a bad setting fails the host's start.</summary>
internal sealed class MiniQueueOptionsValidator : IValidateOptions<MiniQueueOptions>, IValidateOptions<MiniQueueHttpOptions>
{
    public ValidateOptionsResult Validate(string? name, MiniQueueOptions options) => Run(options.Validate);

    public ValidateOptionsResult Validate(string? name, MiniQueueHttpOptions options) => Run(options.Validate);

    private static ValidateOptionsResult Run(Action validate)
    {
        try
        {
            validate();
            return ValidateOptionsResult.Success;
        }
        catch (ArgumentException exception)
        {
            return ValidateOptionsResult.Fail(exception.Message);
        }
    }
}

/// <summary>
/// Raises Kestrel's HTTP/2 stream limit per connection to <see cref="MiniQueueHttpOptions.MaxStreamsPerConnection"/>
/// when the application left it at Kestrel's default, so one connection can carry many consumers.
/// </summary>
internal sealed class KestrelStreamLimitSetup(IOptions<MiniQueueHttpOptions> httpOptions) : IPostConfigureOptions<KestrelServerOptions>
{
    private static readonly int s_kestrelDefault = new KestrelServerOptions().Limits.Http2.MaxStreamsPerConnection;

    public void PostConfigure(string? name, KestrelServerOptions options)
    {
        if (httpOptions.Value.MaxStreamsPerConnection is { } limit && options.Limits.Http2.MaxStreamsPerConnection == s_kestrelDefault)
        {
            options.Limits.Http2.MaxStreamsPerConnection = limit;
        }
    }
}
