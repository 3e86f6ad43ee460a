"""Admin accounts and key listings from the command line (`create-admin`, `admins ...`, `keys list`),
on real stores, audited as done by the CLI."""

from __future__ import annotations

import asyncio

import asyncpg

from admin import accounts, auth
from metering.audit import Actor
from tests.test_cli import run_cli, store_env  # noqa: F401 - the fixture

FIRST = "first password 123"
SECOND = "second password 456"


def query(database_url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(database_url)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def open_session(database_url: str, email: str) -> str:
    async def run() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            admin_id = await conn.fetchval("SELECT id FROM admin_accounts WHERE email = $1", email)
            token, _ = await auth.create_session(conn, admin_id, 1.0, Actor(admin_id, email))
            return token
        finally:
            await conn.close()

    return asyncio.run(run())


def session_alive(database_url: str, token: str) -> bool:
    rows = query(
        database_url,
        "SELECT 1 FROM admin_sessions WHERE token_hash = $1 AND revoked_at IS NULL",
        auth.token_digest(token),
    )
    return bool(rows)


def password_works(database_url: str, email: str, password: str) -> bool:
    [row] = query(database_url, "SELECT password_hash FROM admin_accounts WHERE email = $1", email)
    return asyncio.run(accounts.verify_password(row["password_hash"], password))


def test_help_lists_the_admins_and_keys_list_commands() -> None:
    admins = run_cli("admins", "--help", env={})
    for action in ("list", "create", "set-password", "disable", "enable"):
        assert action in admins.stdout
    assert "--service" in run_cli("keys", "list", "--help", env={}).stdout


def test_create_admin_on_an_existing_email_refuses_and_changes_nothing(
    store_env: dict[str, str],  # noqa: F811 - the fixture
    database_url: str,
) -> None:
    """Issue 14 #9: it used to reset the password silently and leave the sessions alive."""
    made = run_cli("create-admin", "--email", "ops@example.com", "--name", "Ops", env=store_env, stdin=FIRST + "\n")
    assert made.returncode == 0, made.stderr
    token = open_session(database_url, "ops@example.com")
    again = run_cli("create-admin", "--email", "OPS@example.com", "--name", "New", env=store_env, stdin=SECOND + "\n")
    assert again.returncode != 0
    assert "already exists" in again.stderr and "admins set-password" in again.stderr
    assert password_works(database_url, "ops@example.com", FIRST)
    assert not password_works(database_url, "ops@example.com", SECOND)
    assert session_alive(database_url, token)
    [row] = query(database_url, "SELECT name FROM admin_accounts")
    assert row["name"] == "Ops"
    refused = query(database_url, "SELECT actor_email, success FROM audit_log WHERE action = 'admin.create'")
    assert [(r["success"], r["actor_email"].startswith("cli:")) for r in refused] == [(True, True), (False, True)]


def test_admins_create_list_set_password_disable_enable(
    store_env: dict[str, str],  # noqa: F811 - the fixture
    database_url: str,
) -> None:
    env = store_env
    assert (
        run_cli(
            "admins", "create", "boss@example.com", "--name", "Boss", "--role", "admin", env=env, stdin=FIRST
        ).returncode
        == 0
    )
    made = run_cli("admins", "create", "op@example.com", "--name", "Op", "--role", "operator", env=env, stdin=FIRST)
    assert made.returncode == 0, made.stderr
    assert "created operator op@example.com" in made.stdout
    twice = run_cli("admins", "create", "op@example.com", "--name", "X", "--role", "admin", env=env, stdin=SECOND)
    assert twice.returncode == 1 and "already exists" in twice.stderr
    bad_role = run_cli("admins", "create", "x@example.com", "--name", "X", "--role", "root", env=env, stdin=FIRST)
    assert bad_role.returncode == 2 and "invalid choice" in bad_role.stderr

    listed = run_cli("admins", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[1]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert lines["op@example.com"][3:7] == ["operator", "active", "-", "0"]  # never signed in
    assert lines["boss@example.com"][3] == "admin"

    token = open_session(database_url, "op@example.com")
    reset = run_cli("admins", "set-password", "op@example.com", env=env, stdin=SECOND + "\n")
    assert reset.returncode == 0, reset.stderr
    assert "1 session(s) ended" in reset.stdout
    assert not session_alive(database_url, token) and password_works(database_url, "op@example.com", SECOND)

    token = open_session(database_url, "op@example.com")
    assert run_cli("admins", "disable", "op@example.com", env=env).returncode == 0
    assert not session_alive(database_url, token)
    assert "disabled" in run_cli("admins", "list", env=env).stdout
    assert run_cli("admins", "enable", "op@example.com", env=env).returncode == 0
    [row] = query(database_url, "SELECT is_active FROM admin_accounts WHERE email = 'op@example.com'")
    assert row["is_active"] is True
    actions = query(database_url, "SELECT action, success FROM audit_log WHERE actor_email LIKE 'cli:%' ORDER BY id")
    assert [(r["action"], r["success"]) for r in actions] == [
        ("admin.create", True),
        ("admin.create", True),
        ("admin.create", False),
        ("admin.password_reset", True),
        ("admin.disable", True),
        ("admin.enable", True),
    ]


def test_the_last_active_admin_cannot_be_disabled_from_the_cli(
    store_env: dict[str, str],  # noqa: F811 - the fixture
    database_url: str,
) -> None:
    assert (
        run_cli("create-admin", "--email", "boss@example.com", "--name", "B", env=store_env, stdin=FIRST).returncode
        == 0
    )
    refused = run_cli("admins", "disable", "boss@example.com", env=store_env)
    assert refused.returncode == 1 and "last active admin" in refused.stderr
    [row] = query(database_url, "SELECT is_active FROM admin_accounts")
    assert row["is_active"] is True
    [audit] = query(database_url, "SELECT success FROM audit_log WHERE action = 'admin.disable'")
    assert audit["success"] is False
    unknown = run_cli("admins", "set-password", "nobody@example.com", env=store_env, stdin=SECOND)
    assert unknown.returncode == 1 and "nobody@example.com" in unknown.stderr
    short = run_cli("create-admin", "--email", "new@example.com", "--name", "N", env=store_env, stdin="short\n")
    assert short.returncode == 1 and "password" in short.stderr
    failures = query(database_url, "SELECT action FROM audit_log WHERE NOT success ORDER BY id")
    assert [r["action"] for r in failures] == ["admin.disable", "admin.password_reset", "admin.create"]


def test_keys_list_shows_prefix_name_owner_and_dates(
    store_env: dict[str, str],  # noqa: F811 - the fixture
) -> None:
    env = store_env
    assert run_cli("users", "create", "ana@example.com", env=env).returncode == 0
    personal = run_cli("keys", "create", "ana@example.com", "--name", "laptop", env=env).stdout.strip()
    service = run_cli("keys", "create", "--service", "--name", "librechat", env=env).stdout.strip()
    assert run_cli("keys", "revoke", service[:15], env=env).returncode == 0

    everything = run_cli("keys", "list", env=env)
    assert everything.returncode == 0, everything.stderr
    rows = {line.split()[0]: line for line in everything.stdout.splitlines()[1:]}
    assert set(rows) == {personal[:15], service[:15]}
    assert "laptop" in rows[personal[:15]] and "ana@example.com" in rows[personal[:15]]
    assert "(service)" in rows[service[:15]] and rows[service[:15]].rstrip().split()[-1] != "-"  # revoked
    assert rows[personal[:15]].rstrip().endswith("-")  # not revoked
    assert personal not in everything.stdout  # never the key itself

    only_service = run_cli("keys", "list", "--service", env=env).stdout
    assert service[:15] in only_service and personal[:15] not in only_service
    only_ana = run_cli("keys", "list", "ana@example.com", env=env).stdout
    assert personal[:15] in only_ana and service[:15] not in only_ana
    unknown = run_cli("keys", "list", "nobody@example.com", env=env)
    assert unknown.returncode == 1 and "nobody@example.com" in unknown.stderr
