using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using MiniQueue.Http.Protocol;

namespace MiniQueue.Http;

/// <summary>The HTTP front's log messages. Event ids 2000–2099 belong to MiniQueue.Http.</summary>
internal static partial class HttpLog
{
    public const string Category = "MiniQueue.Http";

    [LoggerMessage(EventId = 2000, Level = LogLevel.Information, Message = "MiniQueue engine opened")]
    public static partial void EngineOpened(ILogger logger);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Information, Message = "MiniQueue engine closed: held messages returned and a final commit made")]
    public static partial void EngineClosed(ILogger logger);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Debug, Message = "Consumer of topic {Topic} subscribed")]
    public static partial void Subscribed(ILogger logger, string topic);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Debug, Message = "Consumer of topic {Topic} ended: {Reason}")]
    public static partial void SubscriptionEnded(ILogger logger, string topic, string reason);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Debug, Message = "Consumer of topic {Topic} sent a bad command: {Command}")]
    public static partial void BadCommand(ILogger logger, string topic, CommandKind command);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Warning, Message = "Publishing to topic {Topic} failed: the store did not take the message")]
    public static partial void PublishFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(EventId = 2013, Level = LogLevel.Debug, Message = "Publishing to topic {Topic} was refused: the disk is under the store's reserve")]
    public static partial void PublishRefusedForSpace(ILogger logger, string topic);

    [LoggerMessage(EventId = 2006, Level = LogLevel.Warning, Message = "Purging topic {Topic} failed")]
    public static partial void PurgeFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(EventId = 2007, Level = LogLevel.Warning, Message = "Consumer of topic {Topic}: the next message could not be read back; the stream ends and the message returns")]
    public static partial void ReceiveFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(EventId = 2008, Level = LogLevel.Debug, Message = "Publish to topic {Topic} refused: the body is over {MaxMessageBytes} bytes")]
    public static partial void MessageTooLarge(ILogger logger, string topic, int maxMessageBytes);

    [LoggerMessage(EventId = 2009, Level = LogLevel.Debug, Message = "Request for an invalid topic refused: {Path}")]
    public static partial void InvalidTopic(ILogger logger, PathString path);

    [LoggerMessage(EventId = 2010, Level = LogLevel.Error, Message = "Consumer stream of topic {Topic} failed; the held message returns")]
    public static partial void SubscriptionFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(EventId = 2011, Level = LogLevel.Debug, Message = "Subscribe over {Protocol} refused: subscribe streams need HTTP/2")]
    public static partial void SubscribeNeedsHttp2(ILogger logger, string protocol);

    [LoggerMessage(EventId = 2012, Level = LogLevel.Debug, Message = "Request for topic {Topic} refused with {StatusCode}: its body could not be read")]
    public static partial void BodyReadFailed(ILogger logger, string topic, int statusCode, Exception exception);

    [LoggerMessage(EventId = 2013, Level = LogLevel.Debug, Message = "Publish to topic {Topic} refused with 400: its {Option} is malformed")]
    public static partial void InvalidPublishOption(ILogger logger, string topic, string option);

    [LoggerMessage(EventId = 2014, Level = LogLevel.Error, Message = "Redrive of topic {Topic} failed")]
    public static partial void RedriveFailed(ILogger logger, string topic, Exception exception);

    [LoggerMessage(EventId = 2015, Level = LogLevel.Information, Message = "{Operation} of topic {Topic} refused to {Identity} with {StatusCode}")]
    public static partial void Refused(ILogger logger, string? operation, string topic, string identity, int statusCode);

    [LoggerMessage(EventId = 2016, Level = LogLevel.Warning, Message = "Subscribe to topic {Topic} refused with 429: it has {Limit} consumer streams already")]
    public static partial void TooManyConsumers(ILogger logger, string topic, int limit);

    [LoggerMessage(EventId = 2017, Level = LogLevel.Warning, Message = "Publish to topic {Topic} refused with 429: it would create a topic over the maximum (MaxTopics)")]
    public static partial void TooManyTopics(ILogger logger, string topic);
}
