"""`/api/health` and `/api/admin/litellm/health`."""

from __future__ import annotations

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
