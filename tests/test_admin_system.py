"""`/api/health` and `/api/admin/litellm/health`."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture
from tests.test_mailer import free_port


async def test_health_is_the_seed_envelope_around_system_health(api: AdminApi) -> None:
    reply = await api.get("/health", role=None)
    assert reply.status == 200
    assert reply.body["success"] is True
    assert reply.data["database"] == "healthy" and reply.data["redis"] == "healthy"
    assert reply.data["litellm"] == "healthy"


async def test_litellm_health_runs_its_probes(api: AdminApi) -> None:
    reply = await api.get("/admin/litellm/health", role="viewer")
    assert reply.status == 200
    assert reply.data["status"] == "healthy"
    assert reply.data["liveliness"]["status"] == "healthy"
    assert reply.data["liveliness"]["httpStatus"] == 200
    assert reply.data["readiness"]["status"] == "not_available"  # the fake has no readiness probe


async def test_litellm_health_reports_an_unreachable_litellm(api: AdminApi) -> None:
    await api.patch("/admin/settings", json={"litellmSettings": {"baseUrl": f"http://127.0.0.1:{free_port()}"}})
    reply = await api.get("/admin/litellm/health")
    assert reply.status == 200
    assert reply.data["status"] == "unhealthy"
    assert reply.data["liveliness"]["error"]


async def _litellm_with_failing_readiness() -> TestServer:
    """A LiteLLM whose liveliness answers but whose readiness says its database is unreachable."""

    async def live(_: web.Request) -> web.Response:
        return web.json_response("I'm alive!")

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"status": "healthy", "db": "disconnected"}, status=503)

    app = web.Application()
    app.router.add_get("/health/liveliness", live)
    app.router.add_get("/health/readiness", ready)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_health_and_the_litellm_probe_agree_on_the_url_the_proxy_uses(api: AdminApi) -> None:
    """The proxy forwards to the settings' LiteLLM URL: /health probes that one too (issue 14 #13)."""
    await api.patch("/admin/settings", json={"litellmSettings": {"baseUrl": f"http://127.0.0.1:{free_port()}"}})
    health = await api.get("/health", role=None)
    probe = await api.get("/admin/litellm/health")
    assert (health.data["litellm"], probe.data["status"]) == ("unhealthy", "unhealthy")


async def test_health_and_the_litellm_probe_agree_on_a_failing_readiness(api: AdminApi) -> None:
    server = await _litellm_with_failing_readiness()
    try:
        base = str(server.make_url("")).rstrip("/")
        await api.patch("/admin/settings", json={"litellmSettings": {"baseUrl": base}})
        health = await api.get("/health", role=None)
        probe = await api.get("/admin/litellm/health")
        assert probe.data["readiness"]["httpStatus"] == 503
        assert health.data["litellm"] == probe.data["status"] == "unhealthy"
    finally:
        await server.close()
