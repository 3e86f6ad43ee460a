"""`solaris-proxy quota-requests list|approve|deny` on real stores, beside a running gateway."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.conftest import Gateway
from tests.test_cli import run_cli
from tests.test_selfserve import ask_model, make_user

pytestmark = pytest.mark.asyncio


@pytest.fixture
def store_env(database_url: str, redis_url: str, db_pool: asyncpg.Pool, redis_client: object) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url}


async def test_the_operator_lists_and_approves_a_request(gateway: Gateway, store_env: dict[str, str]) -> None:
    await make_user(gateway)
    await ask_model(gateway, "pedir 50000 tokens: relatório do trimestre")
    listing = await asyncio.to_thread(run_cli, "quota-requests", "list", env=store_env)
    assert listing.returncode == 0, listing.stderr
    assert "ana@example.com" in listing.stdout and "relatório do trimestre" in listing.stdout
    assert "1 request(s) pending" in listing.stdout
    approved = await asyncio.to_thread(run_cli, "quota-requests", "approve", "1", "--note", "ok", env=store_env)
    assert approved.returncode == 0, approved.stderr
    assert "approved" in approved.stdout
    assert "tokens extras neste mês: 50.000" in await ask_model(gateway, "?")  # in Redis at once
    [entry] = await gateway.pool.fetch("SELECT * FROM audit_log WHERE action = 'quota_request.approve'")
    assert entry["actor_email"].startswith("cli:")
    again = await asyncio.to_thread(run_cli, "quota-requests", "deny", "1", env=store_env)
    assert again.returncode == 1 and "already approved" in again.stderr and "Traceback" not in again.stderr
    missing = await asyncio.to_thread(run_cli, "quota-requests", "deny", "9", env=store_env)
    assert missing.returncode == 1 and "no such quota request" in missing.stderr
