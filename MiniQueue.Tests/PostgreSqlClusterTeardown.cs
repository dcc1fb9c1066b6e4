using MiniQueue.Tests.PostgreSql;

namespace MiniQueue.Tests;

/// <summary>Stops the run's PostgreSQL cluster, if a test started one, once every test of the assembly has run
/// (a set-up fixture in the root namespace of the tests covers them all).</summary>
[SetUpFixture]
public sealed class PostgreSqlClusterTeardown
{
    [OneTimeTearDown]
    public async Task StopCluster()
    {
        if (PostgreSqlCluster.Started)
        {
            await PostgreSqlCluster.Current.DestroyAsync();
        }
    }
}
