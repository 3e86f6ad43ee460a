"""The multiplexed hot-path connection, against the real embedded Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from metering.redis_mux import RedisMux


@pytest.fixture
async def mux(redis_client: aioredis.Redis) -> AsyncIterator[RedisMux]:
    mux = RedisMux.for_client(redis_client)
    yield mux
    await mux.aclose()


async def test_concurrent_callers_each_get_their_own_replies(mux: RedisMux, redis_client: aioredis.Redis) -> None:
    async def one(i: int) -> list[object]:
        return await mux.execute(("SET", f"k{i}", f"v{i}"), ("INCRBY", "counter", i), ("GET", f"k{i}"))

    replies = await asyncio.gather(*(one(i) for i in range(500)))
    assert [r[2] for r in replies] == [f"v{i}".encode() for i in range(500)]
    assert all(r[0] == b"OK" and isinstance(r[1], int) for r in replies)
    assert int(await redis_client.get("counter")) == sum(range(500))
    clients = [c for c in await redis_client.client_list() if c.get("cmd") in ("set", "incrby", "get")]
    assert len(clients) == 1  # all 1,500 commands went over one connection


async def test_error_replies_come_back_in_place(mux: RedisMux) -> None:
    await mux.execute(("SET", "text", "abc"))
    wrong, fine, missing = await mux.execute(("INCR", "text"), ("GET", "text"), ("EVALSHA", "0" * 40, 0))
    assert isinstance(wrong, ResponseError) and "not an integer" in str(wrong)
    assert fine == b"abc"
    assert isinstance(missing, NoScriptError)
    assert await mux.execute(("PING",)) == [b"PONG"]  # the connection is still in step


async def test_a_dropped_connection_fails_its_callers_and_the_next_call_reconnects(
    mux: RedisMux, redis_client: aioredis.Redis
) -> None:
    (my_id,) = await mux.execute(("CLIENT", "ID"))
    waiting = asyncio.ensure_future(mux.execute(("BLPOP", "nothing-comes", 5)))
    await asyncio.sleep(0.05)
    assert await redis_client.client_kill_filter(_id=my_id) == 1
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(waiting, 2)
    (new_id,) = await mux.execute(("CLIENT", "ID"))
    assert new_id != my_id


async def test_no_reply_within_the_timeout_is_a_timeout_and_the_connection_is_replaced(
    redis_client: aioredis.Redis,
) -> None:
    mux = RedisMux.for_client(redis_client, timeout=0.3)
    try:
        (first_id,) = await mux.execute(("CLIENT", "ID"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RedisTimeoutError):
            await mux.execute(("BLPOP", "nothing-comes", 3))
        assert loop.time() - started < 1.5
        (second_id,) = await mux.execute(("CLIENT", "ID"))  # a late BLPOP reply cannot be mistaken for this
        assert second_id != first_id
    finally:
        await mux.aclose()


async def test_unreachable_redis_is_a_connection_error(tmp_path: object) -> None:
    client = aioredis.from_url(f"unix://{tmp_path}/no-such.sock")
    mux = RedisMux.for_client(client)
    with pytest.raises(RedisConnectionError):
        await mux.execute(("PING",))
    await client.aclose()


async def test_credentials_and_database_come_from_the_clients_url(redis_url: str, redis_client: aioredis.Redis) -> None:
    await redis_client.acl_setuser("mux-test", enabled=True, passwords=["+s3cret"], keys=["*"], commands=["+@all"])
    parts = urlsplit(redis_url)
    with_user = urlunsplit(parts._replace(netloc=f"mux-test:s3cret@{parts.netloc}", query="db=3"))
    wrong = urlunsplit(parts._replace(netloc=f"mux-test:wrong@{parts.netloc}", query="db=3"))
    good_client, bad_client = aioredis.from_url(with_user), aioredis.from_url(wrong)
    good, bad = RedisMux.for_client(good_client), RedisMux.for_client(bad_client)
    try:
        assert await good.execute(("SET", "in-db-3", "yes"), ("ACL", "WHOAMI")) == [b"OK", b"mux-test"]
        assert await redis_client.get("in-db-3") is None  # not in db 0
        assert await good_client.get("in-db-3") == b"yes"
        with pytest.raises(RedisConnectionError, match="refused"):
            await bad.execute(("PING",))
    finally:
        await good.aclose()
        await bad.aclose()
        await good_client.flushdb()
        await good_client.aclose()
        await bad_client.aclose()
        await redis_client.acl_deluser("mux-test")


async def test_after_a_failed_connect_callers_fail_at_once_then_it_tries_again(redis_client: aioredis.Redis) -> None:
    """A silent Redis host costs the whole connect timeout: the callers queued behind that connect,
    and those arriving just after, must not each wait for one more."""
    attempts: list[float] = []
    real = RedisMux.for_client(redis_client)._opener
    silent = [True]

    async def opener(factory):  # type: ignore[no-untyped-def]
        attempts.append(asyncio.get_running_loop().time())
        if silent[0]:
            await asyncio.sleep(10)  # a host that never answers the SYN
        return await real(factory)

    mux = RedisMux(opener, connect_timeout=0.2, retry_after=0.5)
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(*(mux.execute(("PING",)) for _ in range(50)), return_exceptions=True)
    assert all(isinstance(r, RedisConnectionError) for r in results)
    assert len(attempts) == 1 and loop.time() - started < 0.5  # one timeout for all fifty, not fifty
    with pytest.raises(RedisConnectionError):
        await mux.execute(("PING",))  # within retry_after: no new attempt
    assert len(attempts) == 1
    silent[0] = False
    await asyncio.sleep(0.5)
    try:
        assert await mux.execute(("PING",)) == [b"PONG"]  # and after it, Redis is tried again
        assert len(attempts) == 2
    finally:
        await mux.aclose()
