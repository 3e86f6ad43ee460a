"""`metering.users`: typed changes in, `User` objects out, and each change announced as a `UserChange`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis

from metering.audit import Actor
from metering.period import PeriodClock
from metering.policy import QuotaPolicy
from metering.quota import QuotaEngine, RateLimit, Thresholds
from metering.redis_mux import RedisMux
from metering.user_rules import UserValidationError
from metering.users import UserChange, UserChanges, UserConflict, UserService

ACTOR = Actor(admin_id=None, label="test")
POLICY = QuotaPolicy(
    default_monthly_limit=100_000, min_monthly_limit=0, max_monthly_limit=1_000_000,
    thresholds=Thresholds(), rate=RateLimit(),
)  # fmt: skip


@pytest.fixture
def announced() -> list[UserChange]:
    return []


@pytest.fixture
async def users(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis, announced: list[UserChange]
) -> AsyncIterator[UserService]:
    quota = QuotaEngine(redis_client, RedisMux.for_client(redis_client))

    async def announce(change: UserChange) -> None:
        announced.append(change)

    yield UserService(db_pool, quota, PeriodClock("America/Sao_Paulo"), lambda: POLICY, announce=announce)
    await quota.mux.aclose()


async def test_a_new_user_gets_the_default_monthly_limit(users: UserService, announced: list[UserChange]) -> None:
    user = await users.create(UserChanges(email="ana@example.com", name="Ana"), ACTOR)
    assert (user.monthly_limit, user.extra_tokens, user.total_limit, user.used) == (100_000, 0, 100_000, 0)
    assert [(c.action, c.user_id, c.user) for c in announced] == [("created", user.id, user)]


async def test_setting_the_extra_tokens_grants_the_difference(users: UserService, announced: list[UserChange]) -> None:
    user = await users.create(UserChanges(email="ana@example.com", monthly_limit=1000), ACTOR)
    await users.add_tokens(user.id, 300, "bonus", ACTOR)
    updated = await users.update(user.id, UserChanges(extra_tokens=500), ACTOR)
    assert (updated.extra_tokens, updated.total_limit) == (500, 1500)
    assert [c.action for c in announced] == ["created", "tokens_added", "updated"]
    granted = announced[1]
    assert granted.amount == 300 and granted.user is not None and granted.user.extra_tokens == 300


async def test_every_wrong_field_is_reported_by_its_name(users: UserService) -> None:
    changes = UserChanges(email="not-an-email", monthly_limit=5_000_000, plan="gold")
    with pytest.raises(UserValidationError) as caught:
        await users.create(changes, ACTOR)
    assert set(caught.value.details) == {"email", "monthly_limit", "plan"}


async def test_the_thresholds_are_checked_together(users: UserService) -> None:
    user = await users.create(UserChanges(email="ana@example.com"), ACTOR)
    changes = UserChanges(custom_alert_threshold80=99, custom_alert_threshold95=90)
    with pytest.raises(UserValidationError) as caught:
        await users.update(user.id, changes, ACTOR)
    assert caught.value.details == {"custom_alert_threshold95": "must be greater than custom_alert_threshold80"}


async def test_extra_tokens_cannot_be_set_on_a_new_user(users: UserService) -> None:
    with pytest.raises(UserValidationError) as caught:
        await users.create(UserChanges(email="ana@example.com", extra_tokens=10), ACTOR)
    assert caught.value.details == {"extra_tokens": "is not a field that can be set"}


async def test_a_second_user_with_the_same_librechat_id_conflicts_on_that_field(users: UserService) -> None:
    await users.create(UserChanges(email="ana@example.com", librechat_id="lc-1"), ACTOR)
    with pytest.raises(UserConflict) as caught:
        await users.create(UserChanges(email="bia@example.com", librechat_id="lc-1"), ACTOR)
    assert caught.value.field == "librechat_id"


async def test_a_user_provisioned_by_the_proxy_is_announced_by_id(
    users: UserService, announced: list[UserChange]
) -> None:
    user_id = await users.resolve("new@example.com", None, auto_provision=True)
    assert [(c.action, c.user_id, c.user) for c in announced] == [("created", user_id, None)]
    assert (await users.get(user_id)).monthly_limit == 100_000
