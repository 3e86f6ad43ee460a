"""The client's address: X-Forwarded-For is believed only from SOLARIS_TRUSTED_PROXIES."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from ipaddress import ip_network
from pathlib import Path

import pytest

from admin import auth
from runtime.settings import SettingsError, load_settings
from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture
from tests.conftest import Gateway

StartGateway = Callable[..., Awaitable[Gateway]]


async def recorded_address(gateway: Gateway, forwarded_for: str | None) -> str:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    await gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}], extra_headers=headers
    )
    await gateway.flush_ledger()
    row = await gateway.pool.fetchrow("SELECT ip_address FROM token_usage ORDER BY id DESC LIMIT 1")
    return str(row["ip_address"])


async def test_by_default_a_forwarded_for_header_is_not_believed(gateway: Gateway) -> None:
    assert await recorded_address(gateway, "203.0.113.9") == "127.0.0.1"


@pytest.mark.parametrize(
    ("trusted", "forwarded_for", "expected"),
    [
        ("127.0.0.1", "203.0.113.9", "203.0.113.9"),
        # the nearest hop that is not a trusted proxy; what the client wrote before it is ignored
        ("127.0.0.1,10.0.0.0/8", "198.51.100.1, 203.0.113.9, 10.1.2.3", "203.0.113.9"),
        ("127.0.0.0/8", "", "127.0.0.1"),  # an empty header: the peer
        ("10.0.0.0/8", "203.0.113.9", "127.0.0.1"),  # the peer is not trusted: its header is not read
    ],
)
async def test_a_trusted_proxys_forwarded_for_names_the_client(
    gateway_with: StartGateway, trusted: str, forwarded_for: str, expected: str
) -> None:
    gateway = await gateway_with(trusted_proxies=load_settings({"SOLARIS_TRUSTED_PROXIES": trusted}).trusted_proxies)
    assert await recorded_address(gateway, forwarded_for) == expected


async def test_a_new_forwarded_for_on_each_attempt_does_not_escape_the_login_throttle(
    api: AdminApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "MAX_FAILURES_PER_ADDRESS", 20)  # 500 in production: 90 s of logins here
    for i in range(auth.MAX_FAILURES_PER_ADDRESS):
        body = {"email": f"nobody{i}@solaris.test", "password": "wrong-password"}
        reply = await api.post("/auth/login", role=None, json=body, headers={"X-Forwarded-For": f"198.51.100.{i}"})
        assert reply.status == 401
    spoofed = {"X-Forwarded-For": "192.0.2.200"}
    reply = await api.post("/auth/login", role=None, json={"email": "x@solaris.test", "password": "x"}, headers=spoofed)
    assert reply.status == 429
    entries = await api.audit_entries("auth.login")
    assert {entry["ip_address"] for entry in entries} == {"127.0.0.1"}


def test_trusted_proxies_come_from_the_environment_or_a_toml_list(tmp_path: Path) -> None:
    settings = load_settings({"SOLARIS_TRUSTED_PROXIES": " 10.0.0.0/8, 192.168.1.7 ,::1"})
    assert settings.trusted_proxies == (ip_network("10.0.0.0/8"), ip_network("192.168.1.7/32"), ip_network("::1"))
    config = tmp_path / "solaris.toml"
    config.write_text('trusted_proxies = ["172.16.0.0/12", "127.0.0.1"]\n', encoding="utf-8")
    from_file = load_settings({"SOLARIS_CONFIG": str(config)})
    assert from_file.trusted_proxies == (ip_network("172.16.0.0/12"), ip_network("127.0.0.1/32"))
    assert load_settings({}).trusted_proxies == ()


def test_a_bad_trusted_proxy_names_the_setting() -> None:
    with pytest.raises(SettingsError, match="^SOLARIS_TRUSTED_PROXIES:"):
        load_settings({"SOLARIS_TRUSTED_PROXIES": "10.0.0.0/8, not-an-address"})


def test_request_ids_are_unique_and_differ_in_a_forked_worker() -> None:
    from runtime.net import new_request_id

    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(len(i) == 36 and i.startswith("req_") for i in ids)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # a forked worker, as `serve --workers N` makes them
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.waitpid(child, 0)
    from_child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert from_child[:20] != new_request_id()[:20]  # its own random prefix
