"""Cost-weighted quotas (issue 16): a token of an expensive model counts for more of the quota, on
real Postgres and Redis through the gateway, with the fake upstream (36 tokens an answer)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import openai
import pytest
import redis.asyncio as aioredis

from metering.estimate import estimate_chat
from metering.ledger import UsageEvent
from metering.prices import ModelPrice, PriceBook
from metering.quota import QuotaEngine, RateLimit, Thresholds
from metering.quota_state import Admission
from metering.recorder import Recorder
from metering.redis_mux import RedisMux
from metering.sweeper import InflightInfo, Sweeper
from metering.system_settings import QuotaWeightSettings
from metering.tokenizer import get_encoding
from metering.weights import SCALE, Weight, charge, in_model_tokens, quota_charge, tokens_for, weight_of
from proxy import weighing
from runtime.appkeys import DEPARTMENTS, FORECASTER
from runtime.settings import Settings, load_settings
from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture
from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import COMPLETION_TOKENS, PROMPT_TOKENS, FakeUpstream
from tests.panel_client import Panel, panel_fixture  # noqa: F401 - the fixture
from tests.test_cli import run_cli
from tests.test_department_quota import department_used, make_department
from tests.test_proxy_quota import MESSAGES, make_user
from tests.test_selfserve import get_json

ANSWER_TOKENS = PROMPT_TOKENS + COMPLETION_TOKENS  # what the fake upstream reports for any model
# gpt-4o's blended price ((input + output) / 2) is 10 times gpt-4o-mini's.
PRICES = """
[models."gpt-4o-mini"]
input_cost_per_token = 1e-7
output_cost_per_token = 3e-7

[models."gpt-4o"]
input_cost_per_token = 1e-6
output_cost_per_token = 3e-6
"""
ON = {"quota_weights.enabled": True, "quota_weights.reference_model": "gpt-4o-mini"}
LEDGER_ROWS = """
SELECT model, total_tokens, quota_tokens FROM token_usage u JOIN end_users e ON e.id = u.user_id
WHERE e.email = $1 ORDER BY u.created_at, u.id
"""


@pytest.fixture
def gateway_settings(database_url: str, redis_url: str, upstream: FakeUpstream, tmp_path: Path) -> Settings:
    """The gateway of these tests prices gpt-4o-mini and gpt-4o from a prices file."""
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES, encoding="utf-8")
    return load_settings(
        {},
        database_url=database_url,
        redis_url=redis_url,
        litellm_base_url=upstream.url,
        service_key=SERVICE_KEY,
        sweep_interval=1.0,
        prices_file=prices,
    )


async def ask(gateway: Gateway, email: str, model: str, **kwargs: Any) -> Any:
    return await gateway.client(user=email).chat.completions.create(model=model, messages=MESSAGES, **kwargs)  # type: ignore[arg-type]


async def used(gateway: Gateway, user_id: int) -> int:
    return (await gateway.quota.snapshot(user_id, gateway.clock.current().name)).used


async def ledger(gateway: Gateway, email: str) -> list[tuple[str, int, int | None]]:
    await gateway.flush_ledger()
    return [tuple(r) for r in await gateway.pool.fetch(LEDGER_ROWS, email)]  # type: ignore[misc]


# -- the core -------------------------------------------------------------------------------------


def book() -> PriceBook:
    return PriceBook({"cheap": ModelPrice(1e-7, 3e-7), "dear": ModelPrice(1e-6, 3e-6), "free": ModelPrice(0, 0)})


def test_default_weight_is_the_blended_price_relative_to_the_reference() -> None:
    settings = QuotaWeightSettings(True, "cheap", {})
    assert weight_of("dear", settings, book()) == Weight(10 * SCALE, "price")
    assert weight_of("cheap", settings, book()) == Weight(SCALE, "reference")
    assert weight_of("openai/dear", settings, book()).value == 10  # as PriceBook finds it
    assert weight_of("free", settings, book()).value == 0.0001  # the least weight, never 0
    assert weight_of("cheap", QuotaWeightSettings(True, "dear", {}), book()).value == 0.1


def test_unpriced_models_weigh_one_and_are_flagged() -> None:
    unknown = weight_of("mystery", QuotaWeightSettings(True, "cheap", {}), book())
    assert unknown == Weight(SCALE, "unpriced") and unknown.flagged
    without_reference_price = weight_of("dear", QuotaWeightSettings(True, "mystery", {}), book())
    assert without_reference_price.value == 1 and without_reference_price.flagged


def test_an_override_beats_the_price() -> None:
    settings = QuotaWeightSettings(True, "cheap", {"dear": 2.5, "mystery": 4})
    assert weight_of("dear", settings, book()) == Weight(25_000, "override")
    assert weight_of("mystery", settings, book()).value == 4 and not weight_of("mystery", settings, book()).flagged


def test_charges_round_up_exactly_and_invert() -> None:
    tenth = Weight(1000, "price")
    assert charge(30, tenth) == 3  # 30 * 0.1 in floats is 3.0000000000000004
    assert charge(31, tenth) == 4 and charge(0, tenth) == 0 and charge(5, None) == 5
    assert tokens_for(charge(77, Weight(25_000, "override")), Weight(25_000, "override")) >= 77
    assert tokens_for(40, Weight(100_000, "price")) == 4 and tokens_for(40, None) == 40
    admission = Admission("ok", 0, 100, 1000, 1000, 100, 0.0, completion_cap=75)
    assert in_model_tokens(admission, Weight(100_000, "price")).completion_cap == 7
    assert in_model_tokens(admission, None) is admission


def test_an_events_quota_charge_is_its_weighted_count_or_its_tokens() -> None:
    event = UsageEvent("r", 1, "m", "/v1/chat/completions", 200, 0.0, total_tokens=36)
    assert quota_charge(event) == 36
    event.quota_tokens = 360
    assert quota_charge(event) == 360


@pytest.mark.parametrize("lang", ["pt-BR", "en"])
def test_the_weighted_refusal_is_one_short_line_of_prose(lang: str) -> None:
    """LibreChat shows a provider error inline only as one line of at most 240 characters."""
    ex = SimpleNamespace(
        model="a-very-long-provider/model-name-that-goes-on-and-on-and-on", weight=Weight(25_000, "override")
    )
    big = 9_999_999_999
    text = weighing.quota_exceeded(ex, lang, big, big, dt.datetime(2026, 12, 31))  # type: ignore[arg-type]
    assert len(text) <= 240 and "\n" not in text and "{" not in text
    assert ("2,5" if lang == "pt-BR" else "2.5") in text and text.endswith(".")


# -- through the gateway --------------------------------------------------------------------------


async def test_a_token_of_an_expensive_model_counts_for_more_of_the_quota(gateway: Gateway) -> None:
    await gateway.system.update(ON, "test")
    user_id = await make_user(gateway, "ana@example.com", 10_000)
    await ask(gateway, "ana@example.com", "gpt-4o-mini")
    assert await used(gateway, user_id) == ANSWER_TOKENS
    await ask(gateway, "ana@example.com", "gpt-4o")
    assert await used(gateway, user_id) == ANSWER_TOKENS + 10 * ANSWER_TOKENS
    assert await ledger(gateway, "ana@example.com") == [
        ("gpt-4o-mini", ANSWER_TOKENS, ANSWER_TOKENS),
        ("gpt-4o", ANSWER_TOKENS, 10 * ANSWER_TOKENS),  # the tokens stay the tokens; the charge is weighted
    ]


async def test_the_rebuild_from_the_ledger_gives_what_redis_counted(gateway: Gateway) -> None:
    await gateway.system.update(ON, "test")
    user_id = await make_user(gateway, "ana@example.com", 10_000)
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4o"):
        await ask(gateway, "ana@example.com", model)
    counted = await used(gateway, user_id)
    assert counted == 21 * ANSWER_TOKENS
    await gateway.flush_ledger()
    await gateway.redis.hset(f"sol:use:{{u:{user_id}}}:{gateway.clock.current().name}", "used", 0)
    rebuilt = await gateway.users.rebuild_counters(user_id)
    assert rebuilt.used == counted


async def test_a_department_counts_its_members_weighted_tokens_and_rebuilds_them(gateway: Gateway) -> None:
    await gateway.system.update(ON, "test")
    await make_user(gateway, "ana@example.com", 10_000)
    department_id = await make_department(gateway, "Jurídico", 100_000, "ana@example.com")
    for model in ("gpt-4o", "gpt-4o-mini"):
        await ask(gateway, "ana@example.com", model)
    used, reserved, _ = await department_used(gateway, department_id)
    assert (used, reserved) == (11 * ANSWER_TOKENS, 0)  # what the member's own quota counts
    period = gateway.clock.current().name
    await gateway.redis.hset(f"sol:duse:{{d:{department_id}}}:{period}", "used", 0)
    await gateway.app[DEPARTMENTS].rebuild_counters(department_id)
    assert (await department_used(gateway, department_id))[0] == 11 * ANSWER_TOKENS


async def test_admission_refuses_on_the_weighted_estimate(gateway: Gateway, upstream: FakeUpstream) -> None:
    estimate = estimate_chat({"model": "gpt-4o", "messages": MESSAGES}, get_encoding("o200k_base"))
    await make_user(gateway, "bia@example.com", 5 * estimate)  # the prompt fits; ten times it does not
    await gateway.system.update(ON, "test")
    sent = len(upstream.requests)
    with pytest.raises(openai.APIStatusError) as caught:
        await ask(gateway, "bia@example.com", "gpt-4o")
    assert caught.value.status_code == 402 and caught.value.code == "insufficient_quota"
    text = caught.value.body["message"]  # type: ignore[index]
    assert "tokens ponderados" in text and "gpt-4o conta 10" in text  # it says the quota is weighted
    assert len(text) <= 240 and "\n" not in text
    assert len(upstream.requests) == sent  # refused before the upstream
    await ask(gateway, "bia@example.com", "gpt-4o-mini")  # a cheap model still fits
    await gateway.system.update({"quota_weights.enabled": False}, "test")
    await ask(gateway, "bia@example.com", "gpt-4o")  # weights off: the same request fits unweighted


async def test_changing_a_weight_mid_period_does_not_rewrite_the_past(gateway: Gateway) -> None:
    await gateway.system.update(ON, "test")
    user_id = await make_user(gateway, "caio@example.com", 10_000)
    await ask(gateway, "caio@example.com", "gpt-4o")
    await gateway.system.update({"quota_weights.overrides": {"gpt-4o": 2}}, "test")
    await ask(gateway, "caio@example.com", "gpt-4o")
    assert await used(gateway, user_id) == 10 * ANSWER_TOKENS + 2 * ANSWER_TOKENS
    rows = await ledger(gateway, "caio@example.com")
    assert [charged for _, _, charged in rows] == [10 * ANSWER_TOKENS, 2 * ANSWER_TOKENS]
    assert (await gateway.users.rebuild_counters(user_id)).used == 12 * ANSWER_TOKENS


async def test_with_weights_off_nothing_is_weighted(gateway: Gateway) -> None:
    user_id = await make_user(gateway, "dani@example.com", 10_000)
    assert not gateway.system.current.quota_weights.enabled  # off by default
    await ask(gateway, "dani@example.com", "gpt-4o")
    await ask(gateway, "dani@example.com", "gpt-4o-mini")
    assert await used(gateway, user_id) == 2 * ANSWER_TOKENS
    assert await ledger(gateway, "dani@example.com") == [
        ("gpt-4o", ANSWER_TOKENS, None),
        ("gpt-4o-mini", ANSWER_TOKENS, None),
    ]
    assert (await gateway.users.rebuild_counters(user_id)).used == 2 * ANSWER_TOKENS


async def test_a_model_without_a_price_is_charged_its_tokens(gateway: Gateway) -> None:
    await gateway.system.update(ON, "test")
    user_id = await make_user(gateway, "eva@example.com", 10_000)
    await ask(gateway, "eva@example.com", "mystery-model")
    assert await used(gateway, user_id) == ANSWER_TOKENS
    assert await ledger(gateway, "eva@example.com") == [("mystery-model", ANSWER_TOKENS, ANSWER_TOKENS)]


# -- what the user is told --------------------------------------------------------------------------


async def test_the_quota_model_and_me_quota_say_the_quota_is_weighted(gateway: Gateway) -> None:
    await gateway.system.update(ON, "test")
    await make_user(gateway, "ana@example.com", 10_000)
    await ask(gateway, "ana@example.com", "gpt-4o")
    await gateway.flush_ledger()
    status, body = await get_json(gateway, "/v1/me/quota")
    assert status == 200
    assert body["used"] == 10 * ANSWER_TOKENS and body["unit"] == "weighted_tokens"
    weighting = body["weighting"]
    assert weighting["reference_model"] == "gpt-4o-mini" and weighting["tokens_used"] == ANSWER_TOKENS
    assert weighting["weights"]["gpt-4o"] == 10 and weighting["weights"]["gpt-4o-mini"] == 1
    assert "Cota ponderada pelo custo" in body["message"] and "gpt-4o ×10" in body["message"]
    answer = await gateway.client("ana@example.com").chat.completions.create(
        model="minha-cota", messages=[{"role": "user", "content": "quanto?"}]
    )
    assert answer.choices[0].message.content == body["message"]
    assert "Tokens de fato usados neste mês: 36." in body["message"]


async def test_with_weights_off_me_quota_says_nothing_of_them(gateway: Gateway) -> None:
    await make_user(gateway, "ana@example.com", 10_000)
    status, body = await get_json(gateway, "/v1/me/quota")
    assert status == 200 and "weighting" not in body and "unit" not in body
    assert "ponderad" not in body["message"]


# -- /api/admin/quota-weights -----------------------------------------------------------------------


async def test_the_api_lists_each_models_price_and_weight(api: AdminApi) -> None:
    await api.gateway.system.update({**ON, "quota_weights.overrides": {"local-llm": 0.5}}, "test")
    reply = await api.get("/admin/quota-weights", role="viewer")
    assert reply.status == 200, reply.body
    data = reply.data
    assert (data["enabled"], data["referenceModel"], data["overrides"]) == (True, "gpt-4o-mini", {"local-llm": 0.5})
    models = {m["model"]: m for m in data["models"]}
    assert models["gpt-4o"]["weight"] == models["gpt-4o"]["defaultWeight"] == 10
    assert models["gpt-4o"]["source"] == "price" and models["gpt-4o"]["blendedCostPerToken"] == pytest.approx(2e-6)
    assert models["gpt-4o-mini"]["source"] == "reference"
    local = models["local-llm"]  # no price: weighs 1 by default, flagged until overridden
    assert (local["defaultWeight"], local["weight"], local["override"], local["unpriced"]) == (1, 0.5, 0.5, False)
    assert local["inputCostPerToken"] is None


async def test_the_api_turns_weights_on_and_audits_it(api: AdminApi) -> None:
    reply = await api.patch(
        "/admin/quota-weights", json={"enabled": True, "referenceModel": "gpt-4o", "overrides": {"gpt-4o-mini": 0.2}}
    )
    assert reply.status == 200, reply.body
    assert api.gateway.system.current.quota_weights.enabled
    assert {m["model"]: m["weight"] for m in reply.data["models"]}["gpt-4o-mini"] == 0.2
    [entry] = await api.audit_entries("quota_weights.update")
    assert entry["details"]["before"]["enabled"] is False and entry["details"]["after"]["enabled"] is True
    assert entry["details"]["changed"] == ["enabled", "overrides", "referenceModel"]
    assert "quotaWeightSettings" not in (await api.get("/admin/settings")).data  # its own route


async def test_bad_weights_are_422_per_field_and_change_nothing(api: AdminApi) -> None:
    reply = await api.patch(
        "/admin/quota-weights", json={"enabled": True, "overrides": {"gpt-4o": -1}, "color": "blue"}
    )
    assert reply.status == 422 and set(reply.body["details"]) == {"color"}
    reply = await api.patch("/admin/quota-weights", json={"enabled": True, "overrides": {"gpt-4o": -1}})
    assert reply.status == 422 and set(reply.body["details"]) == {"overrides"}
    assert "between 0.0001 and 1000" in reply.body["details"]["overrides"]
    reply = await api.patch("/admin/quota-weights", json={"enabled": True})
    assert reply.status == 422 and set(reply.body["details"]) == {"enabled"}
    assert "referenceModel must name a model" in reply.body["details"]["enabled"]
    reply = await api.patch("/admin/quota-weights", json={"overrides": {"gpt-4o": "heavy"}})
    assert reply.status == 422 and "overrides" in reply.body["details"]
    assert not api.gateway.system.current.quota_weights.enabled
    assert api.gateway.system.current.quota_weights.overrides == {}


async def test_only_settings_writers_change_weights(api: AdminApi) -> None:
    reply = await api.patch("/admin/quota-weights", json={"enabled": True}, role="viewer")
    assert reply.status == 403
    assert not api.gateway.system.current.quota_weights.enabled


# -- the panel ----------------------------------------------------------------------------------------


def weights_form(body: str) -> dict[str, str]:
    """The weights form as the page fills it: each row's model and override."""
    return dict(re.findall(r'name="((?:model|weight)-\d+)"[^>]*?value="([^"]*)"', body))


async def test_the_panel_turns_weights_on_with_a_reference_and_an_override(panel: Panel) -> None:
    _, body = await panel.get("/admin/quota-weights")
    assert "Cotas ponderadas pelo custo" in body and "Desligado" in body
    form = weights_form(body)
    row = next(k for k, v in form.items() if v == "gpt-4o").replace("model", "weight")
    form.update({"enabled": "on", "referenceModel": "gpt-4o-mini", row: "2,5", "model-99": "", "weight-99": ""})
    extra = max(int(k.split("-")[1]) for k in form if k.startswith("model-") and k != "model-99")
    form.update({f"model-{extra}": "local-llm", f"weight-{extra}": "0,5"})
    resp, _ = await panel.post("/admin/quota-weights", data=form)
    assert resp.status == 303, _
    settings = panel.api.gateway.system.current.quota_weights
    assert settings.enabled and settings.reference_model == "gpt-4o-mini"
    assert settings.overrides == {"gpt-4o": 2.5, "local-llm": 0.5}
    _, body = await panel.get("/admin/quota-weights")
    assert re.search(r'data-model="gpt-4o">.*?data-weight>2,5<', body, re.S)
    assert re.search(r'data-model="local-llm">.*?data-weight>0,5<', body, re.S)
    [entry] = await panel.api.audit_entries("quota_weights.update")
    assert entry["details"]["after"]["overrides"] == {"gpt-4o": 2.5, "local-llm": 0.5}


async def test_the_panel_flags_unpriced_models_and_refuses_weights_without_a_reference(panel: Panel) -> None:
    overrides = {"quota_weights.overrides": {"local-llm": 3}, "quota_weights.reference_model": "gpt-4o-mini"}
    await panel.api.gateway.system.update(overrides, "test")
    _, body = await panel.get("/admin/quota-weights")
    assert re.search(r'data-model="local-llm">.*?preço desconhecido.*?data-weight>3<', body, re.S)
    assert not re.search(r'data-model="gpt-4o">[^\n]*sem preço', body)
    await panel.api.gateway.system.update({"quota_weights.reference_model": "local-llm"}, "test")
    _, body = await panel.get("/admin/quota-weights")  # a reference without a price: nothing to derive from
    assert re.search(r'data-model="gpt-4o">[^\n]*sem preço: peso 1', body)
    resp, body = await panel.post("/admin/quota-weights", data={"enabled": "on", "referenceModel": ""})
    assert resp.status == 422
    assert "Escolha um modelo de referência para ligar os pesos." in body
    assert not panel.api.gateway.system.current.quota_weights.enabled
    resp, body = await panel.post("/admin/quota-weights", data={"model-0": "gpt-4o", "weight-0": "pesado"})
    assert resp.status == 422 and "Cada peso deve ser um número" in body
    resp, _ = await panel.post("/admin/quota-weights", data={"enabled": "on"}, role="viewer")
    assert resp.status == 403


# -- the CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def store_env(database_url: str, redis_url: str, db_pool: asyncpg.Pool, redis_client: object) -> dict[str, str]:
    return {"DATABASE_URL": database_url, "REDIS_URL": redis_url}


async def test_the_operator_sets_weights_and_running_gateways_apply_them(
    gateway: Gateway, store_env: dict[str, str]
) -> None:
    env = {**store_env, "SOLARIS_PRICES_FILE": str(gateway.settings.prices_file)}
    user_id = await make_user(gateway, "ana@example.com", 10_000)
    result = await asyncio.to_thread(
        run_cli, "quota-weights", "set", "--on", "--reference", "gpt-4o-mini", "--weight", "gpt-4o=3", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "cost-weighted quotas: on; reference model: gpt-4o-mini" in result.stdout
    assert re.search(r"^gpt-4o +1\.0000 +3\.0000 +10 +3 +3$", result.stdout, re.M), result.stdout
    for _ in range(100):  # the gateway hears of the change over Redis
        if gateway.system.current.quota_weights.enabled:
            break
        await asyncio.sleep(0.05)
    await ask(gateway, "ana@example.com", "gpt-4o")
    assert await used(gateway, user_id) == 3 * ANSWER_TOKENS
    [entry] = await gateway.pool.fetch("SELECT * FROM audit_log WHERE action = 'quota_weights.update'")
    assert entry["actor_email"].startswith("cli:")
    cleared = await asyncio.to_thread(run_cli, "quota-weights", "set", "--clear", "gpt-4o", env=env)
    assert cleared.returncode == 0 and re.search(r"^gpt-4o +\S+ +\S+ +10 +- +10$", cleared.stdout, re.M)
    refused = await asyncio.to_thread(run_cli, "quota-weights", "set", "--weight", "gpt-4o=0", env=env)
    assert refused.returncode == 1 and "between 0.0001 and 1000" in refused.stderr and "Traceback" not in refused.stderr
    shown = await asyncio.to_thread(run_cli, "quota-weights", "show", env=env)
    assert shown.returncode == 0 and "gpt-4o-mini" in shown.stdout


# -- the sweeper, the answer's cap, the rollup -------------------------------------------------------


async def test_the_sweeper_charges_a_dead_process_s_request_its_weighted_prompt(
    db_pool: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    quota = QuotaEngine(redis_client, RedisMux.for_client(redis_client))
    try:
        recorder = Recorder(redis_client, db_pool, quota, timezone="America/Sao_Paulo")
        user_id = int(
            await db_pool.fetchval(
                "INSERT INTO end_users (email, monthly_limit) VALUES ('s@x.test', 10000) RETURNING id"
            )
        )
        await quota.set_user_config(user_id, status="active", monthly_limit=10_000, alert80=None, alert95=None)
        weight = Weight(10 * SCALE, "price")
        event = UsageEvent(request_id="r-weighed", user_id=user_id, model="gpt-4o", endpoint="/v1/chat/completions",
                           status_code=0, created_at=time.time(), prompt_tokens=40, total_tokens=40,
                           quota_tokens=charge(40, weight))  # fmt: skip
        admission = await quota.admit(
            user_id, "2026-11", "r-weighed", prompt_tokens=charge(40, weight), completion_allowance=charge(60, weight),
            thresholds=Thresholds(), rate=RateLimit(), now_ms=0, inflight_info=InflightInfo("dead", event).encode(),
        )  # fmt: skip
        assert admission.admitted and admission.reservation == 1000
        sweeper = Sweeper(redis_client, quota, recorder, process_id="other", interval=0.1)
        sweeper._missing_since["dead"] = time.monotonic() - 60
        assert await sweeper.sweep_once() == 1
        swept = await quota.snapshot(user_id, "2026-11")
        assert (swept.reserved, swept.used) == (0, 400)  # the prompt, weighted as at admission
    finally:
        await quota.mux.aclose()


async def test_a_cut_answer_is_capped_in_the_model_s_tokens(gateway: Gateway, upstream: FakeUpstream) -> None:
    """Redis reserves weighted tokens; the cap sent upstream is what they pay for of the model's."""
    await gateway.system.update(ON, "test")
    estimate = estimate_chat({"model": "gpt-4o", "messages": MESSAGES}, get_encoding("o200k_base"))
    await make_user(gateway, "fabi@example.com", 10 * estimate + 75)  # room for 7.5 answer tokens of gpt-4o
    await ask(gateway, "fabi@example.com", "gpt-4o", max_tokens=500)
    sent = upstream.requests[-1]["body"]
    assert sent.get("max_tokens", sent.get("max_completion_tokens")) == 7


async def test_the_daily_rollup_keeps_the_weighted_charge(gateway: Gateway) -> None:
    await gateway.system.update(ON, "test")
    user_id = await make_user(gateway, "gabi@example.com", 10_000)
    await ask(gateway, "gabi@example.com", "gpt-4o")
    await gateway.system.update({"quota_weights.enabled": False}, "test")
    await ask(gateway, "gabi@example.com", "gpt-4o")  # a row with no quota_tokens: its tokens
    await gateway.flush_ledger()
    row = await gateway.pool.fetchrow(
        "SELECT sum(total_tokens) AS tokens, sum(quota_tokens) AS charged FROM usage_daily WHERE user_id = $1", user_id
    )
    assert (row["tokens"], row["charged"]) == (2 * ANSWER_TOKENS, 11 * ANSWER_TOKENS)
    forecast = await gateway.app[FORECASTER].for_user(
        user_id, await gateway.quota.snapshot(user_id, gateway.clock.current().name)
    )
    assert forecast.window_tokens == 11 * ANSWER_TOKENS  # the pace is in what the quota counts


async def test_the_admin_user_api_and_page_say_the_figures_are_weighted(panel: Panel) -> None:
    gateway = panel.api.gateway
    await gateway.system.update(ON, "test")
    user_id = await make_user(gateway, "hugo@example.com", 10_000)
    await ask(gateway, "hugo@example.com", "gpt-4o")
    await gateway.flush_ledger()
    data = (await panel.api.get(f"/admin/users/{user_id}")).data
    assert data["currentUsage"] == 10 * ANSWER_TOKENS  # weighted tokens
    assert data["quotaWeighting"] == {"unit": "weighted_tokens", "referenceModel": "gpt-4o-mini", "tokensUsed": 36}
    _, body = await panel.get(f"/admin/users/{user_id}")
    assert "Tokens ponderados (cotas ponderadas pelo custo); tokens usados: 36" in body
    _, body = await panel.get("/admin/users")
    assert "Uso e limites em tokens ponderados" in body
    await gateway.system.update({"quota_weights.enabled": False}, "test")
    assert "quotaWeighting" not in (await panel.api.get(f"/admin/users/{user_id}")).data
    for page in (f"/admin/users/{user_id}", "/admin/users"):
        _, body = await panel.get(page)
        assert "data-weighted" not in body
