"""Fixtures for the admin API tests: a client for /api and signed-in accounts of each role.

Test modules import the fixtures from here under their function names (`api_fixture`,
`smtp_fixture`); tests ask for them as `api` and `smtp`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiosmtpd.controller import Controller

from admin import accounts, auth
from metering.audit import Actor
from metering.invalidation import INVALIDATE_CHANNEL
from tests.conftest import Gateway
from tests.test_mailer import Inbox, free_port

PASSWORD = "correct horse battery"
ROLES: dict[str, tuple[str, list[str]]] = {
    "admin": ("admin", []),
    "operator": ("user", ["operator"]),
    "viewer": ("user", ["viewer"]),
}


# Test accounts go straight into the table: no audit entry, so tests count only their own.
INSERT_ACCOUNT = """
INSERT INTO admin_accounts (email, name, password_hash, role, permissions) VALUES ($1, $2, $3, $4, $5) RETURNING id
"""


async def insert_account(pool: Any, email: str, name: str, role: str, permissions: list[str]) -> int:
    return int(
        await pool.fetchval(INSERT_ACCOUNT, email, name, await accounts.hash_password(PASSWORD), role, permissions)
    )


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any
    raw: bytes = b""

    @property
    def data(self) -> Any:
        return self.body["data"]


@dataclass
class AdminApi:
    gateway: Gateway
    session: aiohttp.ClientSession
    tokens: dict[str, str] = field(default_factory=dict)
    account_ids: dict[str, int] = field(default_factory=dict)
    # Concurrent first calls (asyncio.gather) must make one account and one session, not race.
    _account_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _token_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def base(self) -> str:
        return f"{self.gateway.url}/api"

    async def account(self, role: str) -> int:
        """The account of a role (admin, operator, viewer), created on first use."""
        async with self._account_lock:
            if role in self.account_ids:
                return self.account_ids[role]
            kind, permissions = ROLES[role]
            self.account_ids[role] = await insert_account(
                self.gateway.pool, f"{role}@solaris.test", role.title(), kind, permissions
            )
            return self.account_ids[role]

    async def new_token(self, role: str) -> str:
        """A fresh session for the role's account, made directly (no login, no throttle)."""
        admin_id = await self.account(role)
        token, _ = await auth.create_session(self.gateway.pool, admin_id, 1.0, Actor(admin_id, role))
        return token

    async def token(self, role: str) -> str:
        async with self._token_lock:
            if role not in self.tokens:
                self.tokens[role] = await self.new_token(role)
            return self.tokens[role]

    async def call(
        self,
        method: str,
        path: str,
        *,
        role: str | None = "admin",
        token: str | None = None,
        json: Any = None,
        data: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if token is None and role is not None:
            token = await self.token(role)
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with self.session.request(
            method, self.base + path, json=json, data=data, params=params, headers=sent
        ) as resp:
            raw = await resp.read()
            body: Any = None
            if resp.content_type == "application/json":
                body = await resp.json()
            return Reply(resp.status, body, resp.headers, raw)

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("POST", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Reply:
        return await self.call("DELETE", path, **kwargs)

    async def create_user(self, **fields: Any) -> dict[str, Any]:
        body = {"email": "ana@example.com", "name": "Ana", **fields}
        reply = await self.post("/admin/users", json=body)
        assert reply.status == 201, reply.body
        return dict(reply.data)

    async def audit_entries(self, action: str) -> list[dict[str, Any]]:
        rows = await self.gateway.pool.fetch("SELECT * FROM audit_log WHERE action = $1 ORDER BY id", action)
        return [dict(r) for r in rows]


async def listeners_ready(gateway: Gateway) -> None:
    """Wait until the app's pub/sub listeners have subscribed: a test that ends sooner hits a
    shutdown race in them (see the report on issue 4)."""
    await asyncio.wait_for(gateway.system.subscribed.wait(), 10)
    for _ in range(200):
        [(_, subscribers)] = await gateway.redis.pubsub_numsub(INVALIDATE_CHANNEL)
        if subscribers:
            return
        await asyncio.sleep(0.01)


@pytest.fixture(name="api")
async def api_fixture(gateway: Gateway) -> AsyncIterator[AdminApi]:
    await listeners_ready(gateway)
    async with aiohttp.ClientSession() as session:
        yield AdminApi(gateway, session)


@pytest.fixture(name="smtp")
def smtp_fixture() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server (aiosmtpd) keeping what it receives; yields the inbox and its port."""
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()
