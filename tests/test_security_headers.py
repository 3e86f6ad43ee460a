"""Headers every answer carries: no software version in `Server`; `/api` answers (the login token
among them) are never cached nor sniffed; the panel keeps its own security headers."""

from __future__ import annotations

import re

import aiohttp

from admin.panel import SECURITY_HEADERS
from tests.admin_client import PASSWORD, AdminApi, api_fixture  # noqa: F401 - the fixture
from tests.conftest import SERVICE_KEY

VERSION = re.compile(r"\d+\.\d+")


async def test_api_answers_are_not_stored_nor_sniffed(api: AdminApi) -> None:
    await api.account("viewer")
    login = await api.post("/auth/login", role=None, json={"email": "viewer@solaris.test", "password": PASSWORD})
    assert login.status == 200 and login.data["token"]
    users = await api.get("/admin/users")
    refused = await api.get("/admin/users", role=None)
    missing = await api.get("/no/such/route")
    health = await api.get("/health", role=None)
    for reply in (login, users, refused, missing, health):
        assert reply.headers["Cache-Control"] == "no-store", reply.status
        assert reply.headers["X-Content-Type-Options"] == "nosniff", reply.status


async def test_an_export_keeps_its_single_no_store(api: AdminApi) -> None:
    reply = await api.get("/admin/logs/export")
    assert reply.status == 200
    assert reply.headers.getall("Cache-Control") == ["no-store"]


async def test_no_answer_names_the_server_software_or_its_version(api: AdminApi) -> None:
    base = api.gateway.url
    async with aiohttp.ClientSession() as session:
        for path, headers in [
            ("/api/health", {}),
            ("/api/admin/users", {}),
            ("/admin/login", {}),
            ("/health", {}),
            ("/metrics", {}),
            ("/v1/models", {"Authorization": f"Bearer {SERVICE_KEY}"}),
            ("/v1/models", {}),
            ("/nowhere", {}),
        ]:
            async with session.get(base + path, headers=headers, allow_redirects=False) as resp:
                server = resp.headers.get("Server", "")
                assert "aiohttp" not in server.lower() and not VERSION.search(server), (path, server)


async def test_panel_pages_keep_their_security_headers(api: AdminApi) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{api.gateway.url}/admin/login") as resp:
        assert resp.status == 200
        for name, value in SECURITY_HEADERS.items():
            assert resp.headers[name] == value
