using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using MiniQueue;
using MiniQueue.Http;
using MiniQueue.Http.Hosting;
using MiniQueue.Http.Protocol;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers MiniQueue in an application's services.</summary>
public static class MiniQueueServiceCollectionExtensions
{
    /// <summary>
    /// Adds a MiniQueue engine and its HTTP front. The engine's options are bound from the configuration section
    /// <c>MiniQueue</c>, then <paramref name="configure"/> runs; the HTTP front's from <c>MiniQueue:Http</c>, then
    /// <paramref name="configureHttp"/>. They are validated when the host starts. The engine follows the application's
    /// <see cref="TimeProvider"/> and <c>ILoggerFactory</c> unless the options name their own.
    /// </summary>
    /// <remarks>
    /// The engine opens when the host starts and is disposed when it stops (held messages return to their topics and a
    /// final commit is made). The application's own code can use it in process: resolve <see cref="MiniQueueEngine"/>
    /// (resolving it before the host starts opens it at once). Then map the protocol with <c>MapMiniQueue</c> or
    /// <c>UseMiniQueue</c>. Calling it again only adds the given configuration.
    /// </remarks>
    public static IServiceCollection AddMiniQueue(
        this IServiceCollection services, Action<MiniQueueOptions>? configure = null, Action<MiniQueueHttpOptions>? configureHttp = null)
    {
        ArgumentNullException.ThrowIfNull(services);

        if (!services.Any(static descriptor => descriptor.ServiceType == typeof(MiniQueueMarkerService)))
        {
            services.AddSingleton<MiniQueueMarkerService>();
            services.AddOptions<MiniQueueOptions>().ValidateOnStart();
            services.AddOptions<MiniQueueHttpOptions>().ValidateOnStart();

            // Configuration first, so that code configuring the options has the last word.
            services.AddSingleton<MiniQueueConfigurationSetup>();
            services.AddSingleton<IConfigureOptions<MiniQueueOptions>>(static sp => sp.GetRequiredService<MiniQueueConfigurationSetup>());
            services.AddSingleton<IConfigureOptions<MiniQueueHttpOptions>>(static sp => sp.GetRequiredService<MiniQueueConfigurationSetup>());
            services.TryAddEnumerable(ServiceDescriptor.Singleton<IPostConfigureOptions<MiniQueueOptions>, MiniQueueOptionsPostSetup>());
            services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<MiniQueueOptions>, MiniQueueOptionsValidator>());
            services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<MiniQueueHttpOptions>, MiniQueueOptionsValidator>());
            services.TryAddEnumerable(ServiceDescriptor.Singleton<IPostConfigureOptions<KestrelServerOptions>, KestrelStreamLimitSetup>());

            services.AddLogging();
            services.TryAddSingleton<MiniQueueEngineHost>();
            services.AddHostedService(static sp => sp.GetRequiredService<MiniQueueEngineHost>());
            services.TryAddSingleton(static sp => sp.GetRequiredService<MiniQueueEngineHost>().GetEngine());

            services.TryAddSingleton<MiniQueue.Http.Authorization.TopicAccess>();
            services.TryAddSingleton<PublishHandler>();
            services.TryAddSingleton<SubscribeHandler>();
            services.TryAddSingleton<PurgeHandler>();
            services.TryAddSingleton<RedriveHandler>();
        }

        if (configure is not null)
        {
            services.Configure(configure);
        }

        if (configureHttp is not null)
        {
            services.Configure(configureHttp);
        }

        return services;
    }

    /// <summary>
    /// Makes the engine of <see cref="AddMiniQueue"/> open with <paramref name="open"/> (given the bound options) instead of
    /// <see cref="MiniQueueEngine.OpenAsync(MiniQueueOptions?, CancellationToken)"/>. For shared mode (package
    /// <c>MiniQueue.PostgreSql</c>) use its <c>AddMiniQueuePostgreSql</c>, which registers one. The last call wins.
    /// </summary>
    public static IServiceCollection AddMiniQueueEngineOpener(
        this IServiceCollection services, Func<MiniQueueOptions, CancellationToken, ValueTask<MiniQueueEngine>> open)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(open);
        services.RemoveAll<MiniQueueEngineOpener>();
        services.AddSingleton(new MiniQueueEngineOpener((_, options, cancellationToken) => open(options, cancellationToken)));
        return services;
    }
}
