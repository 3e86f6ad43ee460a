"""The operator's command line: serve from scratch, manage users and keys, clear errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import Gateway

CLI = [sys.executable, "-m", "solaris.cli"]


def run_cli(*args: str, env: dict[str, str], stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], input=stdin, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def store_env(database_url: str, redis_url: str, db_pool: asyncpg.Pool, redis_client: object) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url}


# -- configuration errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SOLARIS_PORT": "abc"}, "SOLARIS_PORT"),
        ({"SOLARIS_LANGUAGE": "fr"}, "SOLARIS_LANGUAGE"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x", "REDIS_URL": "redis://127.0.0.1:1"}, "DATABASE_URL"),
    ],
)
def test_bad_configuration_stops_with_one_line_naming_the_setting(env: dict[str, str], named: str) -> None:
    result = run_cli("migrate", env=env)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and named in lines[0]
    assert "Traceback" not in result.stderr


def test_help_explains_every_command() -> None:
    result = run_cli("--help", env={})
    for command in ("serve", "migrate", "create-admin", "users", "keys", "reconcile"):
        assert command in result.stdout


# -- operator commands on real stores ----------------------------------------------------------


def test_create_admin_reads_the_password_from_stdin(store_env: dict[str, str], database_url: str) -> None:
    result = run_cli(
        "create-admin", "--email", "ops@example.com", "--name", "Ops", env=store_env, stdin="s3cret-pass-123\n"
    )
    assert result.returncode == 0, result.stderr
    assert "created admin ops@example.com" in result.stdout
    import asyncio

    async def check() -> tuple[str, int]:
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow("SELECT password_hash FROM admin_accounts WHERE email = 'ops@example.com'")
            audits = await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'admin.create'")
            return row["password_hash"], audits
        finally:
            await conn.close()

    password_hash, audits = asyncio.run(check())
    assert password_hash.startswith("$argon2id$") and "s3cret" not in password_hash
    assert audits == 1


def test_short_password_is_refused(store_env: dict[str, str]) -> None:
    result = run_cli("create-admin", "--email", "ops@example.com", "--name", "Ops", env=store_env, stdin="short\n")
    assert result.returncode == 1 and "password" in result.stderr


def test_keys_create_prints_the_key_alone(store_env: dict[str, str]) -> None:
    assert run_cli("users", "create", "ana@example.com", "--limit", "5000", env=store_env).returncode == 0
    result = run_cli("keys", "create", "ana@example.com", env=store_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("sk-sol-")


async def test_cli_changes_take_effect_on_the_next_request(gateway: Gateway, store_env: dict[str, str]) -> None:
    import asyncio

    import openai

    client = gateway.client(user="bia@example.com")
    await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])
    result = await asyncio.to_thread(run_cli, "users", "suspend", "bia@example.com", env=store_env)
    assert result.returncode == 0, result.stderr
    with pytest.raises(openai.PermissionDeniedError):
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])
    await asyncio.to_thread(run_cli, "users", "activate", "bia@example.com", env=store_env)
    await asyncio.to_thread(run_cli, "users", "set-limit", "bia@example.com", "40", env=store_env)
    with pytest.raises(openai.APIStatusError) as refused:  # a quota refusal is a 402
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])
    assert refused.value.status_code == 402
    grant = await asyncio.to_thread(
        run_cli, "users", "add-tokens", "bia@example.com", "1000", "--reason", "teste", env=store_env
    )
    assert grant.returncode == 0, grant.stderr
    reply = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])
    assert reply.choices
    listing = await asyncio.to_thread(run_cli, "users", "list", env=store_env)
    assert "bia@example.com" in listing.stdout
    reconcile = await asyncio.to_thread(run_cli, "reconcile", env=store_env)
    assert reconcile.returncode == 0 and "1 user" in reconcile.stdout
    audits = await gateway.pool.fetch("SELECT DISTINCT action FROM audit_log")
    assert {"user.update", "user.tokens.add", "quota.reconcile"} <= {r["action"] for r in audits}


async def test_users_create_sets_the_language_end_users_read(gateway: Gateway, store_env: dict[str, str]) -> None:
    import asyncio

    import openai

    created = await asyncio.to_thread(
        run_cli, "users", "create", "eve@example.com", "--language", "en", "--limit", "5000", env=store_env
    )
    assert created.returncode == 0, created.stderr
    assert await gateway.pool.fetchval("SELECT language FROM end_users WHERE email = 'eve@example.com'") == "en"
    assert (await asyncio.to_thread(run_cli, "users", "suspend", "eve@example.com", env=store_env)).returncode == 0
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await gateway.client(user="eve@example.com").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert "Your account is suspended" in refused.value.message  # the user's language, not the default
    wrong = await asyncio.to_thread(run_cli, "users", "create", "fr@example.com", "--language", "fr", env=store_env)
    assert wrong.returncode == 2 and "--language" in wrong.stderr


def test_unknown_user_gets_a_clear_error(store_env: dict[str, str]) -> None:
    result = run_cli("users", "suspend", "nobody@example.com", env=store_env)
    assert result.returncode == 1 and "no such user" in result.stderr


# -- serve from scratch ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _health(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _serve_until_healthy(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(SOLARIS_DATA_DIR=str(data_dir), SOLARIS_PORT=str(port))
    process = subprocess.Popen([*CLI, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            status, body = _health(port)
            if status == 200 and '"database": "healthy"' in body and '"redis": "healthy"' in body:
                return process
        except OSError:
            pass
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        time.sleep(0.25)
    process.kill()
    raise AssertionError("not healthy within 20 s")


def _engine_processes(data_dir: Path) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(data_dir) in line and ("postgres" in line or "redis" in line)]


def test_serve_starts_embedded_engines_keeps_data_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    port = _free_port()
    process = _serve_until_healthy(data_dir, port)
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        created = run_cli("users", "create", "kept@example.com", env={**env, "SOLARIS_DATA_DIR": str(data_dir)})
        assert created.returncode == 0, created.stderr
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        process.wait(30)
    assert process.returncode == 0
    assert _engine_processes(data_dir) == []

    process = _serve_until_healthy(data_dir, port)  # a restart keeps the data
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        listing = run_cli("users", "list", env={**env, "SOLARIS_DATA_DIR": str(data_dir)})
        assert "kept@example.com" in listing.stdout
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
    assert _engine_processes(data_dir) == []
