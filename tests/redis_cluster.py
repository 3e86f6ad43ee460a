"""Fixtures for the cluster tests: a real Redis Cluster (`bench.redis_cluster`: six Debian
`redis-server` processes, 3 primaries + 3 replicas) and gateways on it.

`redis_cluster` (session scope, registered in conftest) starts it once, only when a test asks for
it, and stops the processes by pid. Without Debian's redis-server the tests skip.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp.test_utils import TestServer

from bench.redis_cluster import ClusterUnavailable, RedisCluster, start_cluster
from metering.ledger import set_shards
from runtime.settings import Settings, load_settings
from solaris.app import create_app
from tests import conftest  # a module, not names: conftest imports this module at its end
from tests.fake_upstream import FakeUpstream


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    try:
        cluster = start_cluster()
    except ClusterUnavailable as missing:
        pytest.skip(str(missing))
    yield cluster
    cluster.stop()
    shutil.rmtree(cluster.folder, ignore_errors=True)


def cluster_settings(cluster: RedisCluster, database_url: str, upstream_url: str, **changes: object) -> Settings:
    base: dict[str, object] = {
        "database_url": database_url,
        "redis_url": cluster.url,
        "redis_cluster": True,
        "litellm_base_url": upstream_url,
        "service_key": conftest.SERVICE_KEY,
        "sweep_interval": 1.0,
    }
    return load_settings({}, **{**base, **changes})


@pytest.fixture
async def cluster_gateway_with(
    redis_cluster: RedisCluster, database_url: str, upstream: FakeUpstream, db_pool: object
) -> AsyncIterator[Callable[..., Awaitable[conftest.Gateway]]]:
    """Start in-process gateways on the Redis Cluster (emptied first) with some settings changed."""
    if redis_cluster.killed:
        redis_cluster.restart_killed()
    redis_cluster.flush()
    servers: list[TestServer] = []

    async def start(**changes: object) -> conftest.Gateway:
        app = create_app(cluster_settings(redis_cluster, database_url, upstream.url, **changes))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return conftest.Gateway(str(server.make_url("")).rstrip("/"), app)

    yield start
    for server in servers:
        await server.close()
    set_shards(1)  # the single-Redis tests after these append to the one stream again
