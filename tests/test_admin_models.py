"""`/api/admin/models`: LiteLLM's models merged with our 24 h usage and passive health."""

from __future__ import annotations

import contextlib
import time

import openai

from runtime.appkeys import CALIBRATION
from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture
from tests.test_admin_analytics import record, usage
from tests.test_mailer import free_port


async def test_models_merge_litellm_info_with_our_usage(api: AdminApi) -> None:
    client = api.gateway.client(user="ana@example.com")
    await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])
    await api.gateway.flush_ledger()
    reply = await api.get("/admin/models", role="viewer")
    assert reply.status == 200, reply.body
    models = {m["name"]: m for m in reply.data}
    assert set(models) == {"gpt-4o", "gpt-4o-mini"}
    mini = models["gpt-4o-mini"]
    assert mini["provider"] == "openai"
    assert mini["status"] == "healthy"
    assert mini["maxTokens"] == 16384
    assert mini["supportsVision"] is True and mini["supportsFunctionCalling"] is True
    assert mini["costPerInputToken"] == 1.5e-7 and mini["costPerOutputToken"] == 6e-7
    assert mini["usage24h"]["requests"] == 1 and mini["usage24h"]["tokens"] == 36
    assert mini["lastCheck"] is not None
    assert models["gpt-4o"]["usage24h"]["requests"] == 0


async def test_passive_health_from_the_last_24_hours(api: AdminApi) -> None:
    await record(
        api, *[usage(None, "gpt-4o", status=429) for _ in range(3)], *[usage(None, "gpt-4o") for _ in range(3)]
    )
    await record(api, *[usage(None, "gpt-4o-mini", status=500) for _ in range(5)])
    await record(api, *[usage(None, "gpt-4o-mini", status=500, at=time.time() - 2 * 86400) for _ in range(50)])
    models = {m["name"]: m for m in (await api.get("/admin/models")).data}
    assert models["gpt-4o"]["status"] == "rate_limited"
    assert models["gpt-4o"]["errorRate"] == 50.0
    assert models["gpt-4o-mini"]["status"] == "unhealthy"
    assert models["gpt-4o-mini"]["usage24h"]["requests"] == 5


async def test_a_model_name_with_slashes_and_a_model_litellm_no_longer_lists(api: AdminApi) -> None:
    await record(api, usage(None, "openai/gpt-4-legacy"))
    reply = await api.get("/admin/models/openai/gpt-4-legacy")
    assert reply.status == 200, reply.body
    assert reply.data["name"] == "openai/gpt-4-legacy"
    assert reply.data["status"] == "unavailable"
    encoded = await api.get("/admin/models/openai%2Fgpt-4-legacy")
    assert encoded.status == 200
    assert (await api.get("/admin/models/gpt-4o")).data["status"] == "healthy"
    assert (await api.get("/admin/models/nope")).status == 404


async def test_refresh_is_audited_and_announced(api: AdminApi) -> None:
    pubsub = api.gateway.redis.pubsub()
    await pubsub.subscribe("solaris:events")
    reply = await api.post("/admin/models/refresh")
    assert reply.status == 200
    assert {m["name"] for m in reply.data} == {"gpt-4o", "gpt-4o-mini"}
    [entry] = await api.audit_entries("models.refresh")
    assert entry["success"] is True and entry["details"]["models"] == ["gpt-4o", "gpt-4o-mini"]
    seen = []
    for _ in range(50):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message:
            seen.append(message["data"])
            if b"model_status" in message["data"]:
                break
    await pubsub.aclose()
    assert any(b'"model_status"' in m for m in seen)


async def test_refresh_when_litellm_is_down_is_502_and_audited(api: AdminApi) -> None:
    await api.patch("/admin/settings", json={"litellmSettings": {"baseUrl": f"http://127.0.0.1:{free_port()}"}})
    reply = await api.post("/admin/models/refresh")
    assert reply.status == 502
    assert reply.body["code"] == "litellm_unreachable"
    [entry] = await api.audit_entries("models.refresh")
    assert entry["success"] is False


async def test_each_model_shows_how_its_provider_counts_prompts(api: AdminApi) -> None:
    calibration = api.gateway.app[CALIBRATION]
    for _ in range(10):
        calibration.observe("gpt-4o-mini", 10, 25)  # the provider counts 2.5 tokens per estimated one
    await calibration.sync()
    models = {m["name"]: m for m in (await api.get("/admin/models", role="viewer")).data}
    assert models["gpt-4o-mini"]["promptCalibration"] == {"factor": 2.5, "samples": 10}
    assert models["gpt-4o"]["promptCalibration"] == {"factor": 1.0, "samples": 0}


async def test_a_user_shows_the_requests_refused_this_period_by_reason(api: AdminApi) -> None:
    user = await api.create_user(email="ines@example.com", monthlyLimit=10)
    client = api.gateway.client(user="ines@example.com")
    await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])
    for _ in range(2):  # the first answer spent the limit: these two are refused
        with contextlib.suppress(openai.APIStatusError):
            await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "oi"}])
    shown = (await api.get(f"/admin/users/{user['id']}", role="viewer")).data
    assert shown["refusals"] == {"quota": 2} and shown["status"] == "blocked"
    analytics = (await api.get(f"/admin/analytics/users/{user['id']}", role="viewer")).data
    assert analytics["refusalsThisPeriod"] == {"quota": 2}
