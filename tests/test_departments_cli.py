"""`solaris-proxy departments list|create|update|delete|assign|import|rebuild` on real stores,
beside a running gateway: the same checks and audit entries as the API, effective on the next request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import openai
import pytest

from runtime.appkeys import DEPARTMENT_QUOTA
from tests.conftest import Gateway
from tests.fake_upstream import FakeUpstream
from tests.test_cli import run_cli
from tests.test_proxy_quota import MESSAGES, make_user

pytestmark = pytest.mark.asyncio


@pytest.fixture
def store_env(database_url: str, redis_url: str, db_pool: asyncpg.Pool, redis_client: object) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url}


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = await asyncio.to_thread(run_cli, "departments", *args, env=env)
    return done.returncode, done.stdout, done.stderr


async def test_the_operator_creates_assigns_and_changes_a_department(
    gateway: Gateway, upstream: FakeUpstream, store_env: dict[str, str]
) -> None:
    await make_user(gateway, "ana@example.com", 100_000)
    code, out, err = await cli(store_env, "create", "Jurídico", "--limit", "0", "--contacts", "chefe@example.com")
    assert code == 0, err
    assert "Jurídico" in out and "chefe@example.com" in out
    code, out, err = await cli(store_env, "assign", "ana@example.com", "jurídico")
    assert code == 0, err
    client = gateway.client(user="ana@example.com")
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert "departamento" in refused.value.message
    code, out, err = await cli(store_env, "update", "Jurídico", "--limit", "5000", "--thresholds", "50,90")
    assert code == 0 and "50/90" in out, err
    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    code, out, _ = await cli(store_env, "list")
    assert "36 / 5,000" in out and "1 department(s)" in out
    entries = await gateway.pool.fetch("SELECT action, actor_email FROM audit_log ORDER BY id")
    assert [r["action"] for r in entries[-3:]] == ["department.create", "user.update", "department.update"]
    assert all(r["actor_email"].startswith("cli:") for r in entries[-3:])
    # Rebuilt from the ledger (the command flushes the writer first), the counters agree with it.
    department_id = await gateway.pool.fetchval("SELECT id FROM departments")
    await gateway.redis.delete(f"sol:duse:{{d:{department_id}}}:{gateway.clock.current().name}")
    code, out, err = await cli(store_env, "rebuild")
    assert code == 0 and "1 department(s)" in out, err
    assert await gateway.pool.fetchval("SELECT details FROM audit_log WHERE action = 'quota.reconcile'") == {
        "departments": 1
    }
    state = await gateway.app[DEPARTMENT_QUOTA].snapshots([department_id], gateway.clock.current().name)
    assert state[department_id].used == 36
    code, _, err = await cli(store_env, "delete", "Jurídico")
    assert code == 0, err
    assert await gateway.pool.fetchval("SELECT department_id FROM end_users") is None


async def test_the_operator_imports_a_csv_all_or_nothing(
    gateway: Gateway, store_env: dict[str, str], tmp_path: Path
) -> None:
    await make_user(gateway, "ana@example.com", 1_000)
    await make_user(gateway, "bia@example.com", 1_000)
    assert (await cli(store_env, "create", "Vendas", "--limit", "10000"))[0] == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("e-mail,department\nana@example.com,Vendas\nbia@example.com,Marte\n", encoding="utf-8")
    code, out, err = await cli(store_env, "import", str(bad))
    assert code == 1 and "line 3: bia@example.com -> Marte: unknown_department" in out
    assert "nothing was changed" in err and "Traceback" not in err
    assert await gateway.pool.fetchval("SELECT count(*) FROM end_users WHERE department_id IS NOT NULL") == 0
    good = tmp_path / "good.csv"
    good.write_text("\ufeffe-mail;departamento\nana@example.com;vendas\nbia@example.com;Vendas\n", encoding="utf-8")
    code, out, err = await cli(store_env, "import", str(good))
    assert code == 0 and "2 user(s) assigned" in out, err
    assert await gateway.pool.fetchval("SELECT count(*) FROM end_users WHERE department_id IS NOT NULL") == 2
    code, _, err = await cli(store_env, "assign", "nobody@example.com", "Vendas")
    assert code == 1 and "no such user" in err
    code, _, err = await cli(store_env, "create", "vendas", "--limit", "1")
    assert code == 1 and "already the name" in err
