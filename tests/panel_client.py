"""Helpers for the panel tests: a signed-in cookie session and its CSRF token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from admin import csrf
from admin.pages.common import SESSION_COOKIE
from tests.admin_client import AdminApi


@dataclass
class Panel:
    api: AdminApi
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.api.gateway.url

    async def cookie_for(self, role: str) -> str:
        return await self.api.token(role)

    async def request(
        self, method: str, path: str, *, role: str | None = "admin", data: Any = None, csrf_token: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[aiohttp.ClientResponse, str]:  # fmt: skip
        sent = dict(headers or {})
        if role is not None:
            token = await self.cookie_for(role)
            sent["Cookie"] = f"{SESSION_COOKIE}={token}"
            if csrf_token and method != "GET":
                data = {**(data or {}), csrf.FIELD: csrf.session_token(token)}
        async with self.session.request(
            method, self.url + path, data=data, headers=sent, allow_redirects=False
        ) as resp:
            return resp, await resp.text()

    async def get(self, path: str, **kwargs: Any) -> tuple[aiohttp.ClientResponse, str]:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> tuple[aiohttp.ClientResponse, str]:
        return await self.request("POST", path, **kwargs)


@pytest.fixture(name="panel")
async def panel_fixture(api: AdminApi) -> AsyncIterator[Panel]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield Panel(api, session)
