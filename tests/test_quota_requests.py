"""Asking for more tokens (issue 16): from the chat and /v1/me/quota-requests; admins approve (a grant
until the period's end, effective at once) or deny with a note, in the API and the panel; audited;
the user reads the outcome from the virtual quota model."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest

from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - fixture
from tests.conftest import SERVICE_KEY, Gateway
from tests.panel_client import Panel, panel_fixture  # noqa: F401 - fixture
from tests.test_admin_users import feed, wait_for_event  # noqa: F401 - fixture
from tests.test_selfserve import ask_model, make_user

pytestmark = pytest.mark.asyncio

ASK_PT = "pedir 50000 tokens: relatório do trimestre"


async def post_request(gateway: Gateway, body: Any, user: str = "ana@example.com") -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {SERVICE_KEY}", "X-Solaris-User": user}
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url + "/v1/me/quota-requests", json=body, headers=headers) as resp:
            return resp.status, await resp.json()


async def requests_rows(gateway: Gateway) -> list[dict[str, Any]]:
    return [dict(r) for r in await gateway.pool.fetch("SELECT * FROM quota_requests ORDER BY id")]


async def exhaust(gateway: Gateway, upstream: Any) -> None:
    """Spend past a 1,000-token limit with one real request, then see the next one refused."""
    upstream.behaviour.prompt_tokens = 1_000
    client = gateway.client()
    await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    upstream.behaviour.prompt_tokens = 21
    with pytest.raises(openai.APIStatusError) as refused:
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 402


# -- asking --------------------------------------------------------------------------------------


async def test_a_chat_message_asks_for_more_tokens(gateway: Gateway) -> None:
    user_id = await make_user(gateway)
    text = await ask_model(gateway, ASK_PT)
    assert text.startswith("Pedido nº 1 registrado: 50.000 tokens (relatório do trimestre).")
    assert "Seu pedido nº 1 de 50.000 tokens (relatório do trimestre) está aguardando um administrador." in text
    [row] = await requests_rows(gateway)
    assert (row["user_id"], row["amount"], row["reason"], row["source"], row["status"]) == (
        user_id, 50_000, "relatório do trimestre", "chat", "pending",
    )  # fmt: skip
    assert row["period"] == gateway.clock.current().name


async def test_an_english_chat_message_asks_too(gateway: Gateway) -> None:
    await make_user(gateway, language="en")
    text = await ask_model(gateway, "request 50,000 tokens: quarterly report")
    assert text.startswith("Request #1 recorded: 50,000 tokens (quarterly report).")
    [row] = await requests_rows(gateway)
    assert (row["amount"], row["reason"]) == (50_000, "quarterly report")


async def test_a_second_request_waits_for_the_first(gateway: Gateway) -> None:
    await make_user(gateway)
    await ask_model(gateway, ASK_PT)
    text = await ask_model(gateway, "pedir 1000 tokens: outro")
    assert text.startswith("Você já tem um pedido aguardando decisão (nº 1).")
    status, body = await post_request(gateway, {"amount": 10, "reason": "again"})
    assert status == 409 and body["error"]["code"] == "request_pending"
    assert len(await requests_rows(gateway)) == 1


async def test_a_malformed_ask_explains_the_form_and_records_nothing(gateway: Gateway) -> None:
    await make_user(gateway)
    text = await ask_model(gateway, "pedir tokens por favor")
    assert text.startswith("Não entendi o pedido. Escreva assim: `pedir 50000 tokens: motivo`.")
    assert await requests_rows(gateway) == []


@pytest.mark.parametrize(
    ("message", "answer"),
    [
        ("pedir 0 tokens: nada", "Não foi possível registrar o pedido: a quantidade deve ser um número inteiro de 1"),
        ("pedir 99999999999999 tokens: muito", "Não foi possível registrar o pedido: a quantidade"),
        ("pedir 10 tokens: " + "x" * 501, "Não foi possível registrar o pedido: o motivo deve ter até 500 caracteres."),
    ],
)
async def test_an_invalid_chat_ask_says_why_in_the_users_language(gateway: Gateway, message: str, answer: str) -> None:
    await make_user(gateway)
    assert (await ask_model(gateway, message)).startswith(answer)
    assert await requests_rows(gateway) == []


async def test_simultaneous_asks_record_one_request(gateway: Gateway) -> None:
    await make_user(gateway)
    await ask_model(gateway, "?")  # the user exists before the race
    results = await asyncio.gather(*(post_request(gateway, {"amount": 10 + i, "reason": "x"}) for i in range(10)))
    assert sorted(status for status, _ in results) == [201] + [409] * 9
    assert len(await requests_rows(gateway)) == 1


async def test_the_api_asks_with_json(gateway: Gateway) -> None:
    user_id = await make_user(gateway)
    status, body = await post_request(gateway, {"amount": 20_000, "reason": "migração"})
    assert status == 201
    assert (body["amount"], body["reason"], body["status"], body["source"]) == (20_000, "migração", "pending", "api")
    [row] = await requests_rows(gateway)
    assert row["id"] == body["id"] and row["user_id"] == user_id
    [entry] = await gateway.pool.fetch("SELECT * FROM audit_log WHERE action = 'quota_request.create'")
    assert entry["actor_email"] == "end-user:ana@example.com" and entry["resource_id"] == str(body["id"])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"amount": 0, "reason": "x"}, "amount"),
        ({"amount": "50000", "reason": "x"}, "amount"),
        ({"amount": True, "reason": "x"}, "amount"),
        ({"amount": 10**13, "reason": "x"}, "amount"),
        ({"amount": 10}, "reason"),
        ({"amount": 10, "reason": "   "}, "reason"),
        ({"amount": 10, "reason": "x" * 501}, "reason"),
        ([1, 2], None),
    ],
)
async def test_bad_asks_are_400_and_change_nothing(gateway: Gateway, body: Any, param: str | None) -> None:
    await make_user(gateway)
    status, answer = await post_request(gateway, body)
    assert status == 400 and answer["error"]["param"] == param
    assert await requests_rows(gateway) == []


async def test_asking_without_an_end_user_is_refused(gateway: Gateway) -> None:
    headers = {"Authorization": f"Bearer {SERVICE_KEY}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url + "/v1/me/quota-requests", json={"amount": 1, "reason": "x"},
                                headers=headers) as resp:  # fmt: skip
            assert resp.status == 400 and (await resp.json())["error"]["code"] == "missing_user"
    assert await requests_rows(gateway) == []


# -- deciding ------------------------------------------------------------------------------------


async def test_an_approved_grant_lets_a_blocked_user_through_at_once(
    gateway: Gateway,
    upstream: Any,
    api: AdminApi,
    feed: list[dict[str, Any]],  # noqa: F811 - the fixture
) -> None:
    user_id = await make_user(gateway, monthly_limit=1_000)
    await exhaust(gateway, upstream)
    await ask_model(gateway, ASK_PT)
    listed = await api.get("/admin/quota-requests", params={"status": "pending"})
    assert listed.status == 200 and [r["id"] for r in listed.data] == [1]
    assert listed.data[0]["userEmail"] == "ana@example.com" and listed.body["pagination"]["total"] == 1
    reply = await api.post("/admin/quota-requests/1/approve", json={"note": "ok até o fim do mês"})
    assert reply.status == 200, reply.body
    assert reply.data["status"] == "approved" and reply.data["grantId"] is not None
    # no rebuild, no wait: the next request passes
    answer = await gateway.client().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content
    grant = await gateway.pool.fetchrow("SELECT * FROM token_grants WHERE id = $1", reply.data["grantId"])
    assert (grant["user_id"], grant["amount"], grant["period"]) == (user_id, 50_000, gateway.clock.current().name)
    [entry] = await api.audit_entries("quota_request.approve")
    assert entry["details"]["amount"] == 50_000 and entry["actor_email"] == "admin@solaris.test"
    text = await ask_model(gateway, "e aí?")
    assert "Seu pedido nº 1 de 50.000 tokens foi **aprovado**" in text
    assert "Observação: ok até o fim do mês" in text
    assert "tokens extras neste mês: 50.000" in text
    event = await wait_for_event(feed, "user_update", "tokens_added")  # the panel's live views hear of it
    assert (event["data"]["user"]["id"], event["data"]["amount"]) == (user_id, 50_000)


async def test_a_denied_request_tells_the_user_the_note(gateway: Gateway, api: AdminApi) -> None:
    await make_user(gateway, language="en")
    await ask_model(gateway, "request 9000 tokens: demo")
    reply = await api.post("/admin/quota-requests/1/deny", json={"note": "use the smaller model"})
    assert reply.status == 200 and reply.data["status"] == "denied" and reply.data["grantId"] is None
    assert await gateway.pool.fetchval("SELECT count(*) FROM token_grants") == 0
    [entry] = await api.audit_entries("quota_request.deny")
    assert entry["details"]["note"] == "use the smaller model"
    text = await ask_model(gateway, "and?")
    assert "Your request #1 for 9,000 tokens was **denied**" in text and "Note: use the smaller model" in text
    # decided: a new request may be made
    assert (await post_request(gateway, {"amount": 5, "reason": "again"}))[0] == 201


async def test_a_decided_request_cannot_be_decided_again(gateway: Gateway, api: AdminApi) -> None:
    await make_user(gateway)
    await ask_model(gateway, ASK_PT)
    assert (await api.post("/admin/quota-requests/1/deny")).status == 200
    again = await api.post("/admin/quota-requests/1/approve")
    assert again.status == 409 and again.body["details"] == {"status": "denied"}
    assert await gateway.pool.fetchval("SELECT count(*) FROM token_grants") == 0
    assert (await api.post("/admin/quota-requests/99/approve")).status == 404
    assert (await api.get("/admin/quota-requests/99")).status == 404


async def test_simultaneous_approvals_grant_once(gateway: Gateway, api: AdminApi) -> None:
    await make_user(gateway)
    await ask_model(gateway, ASK_PT)
    replies = await asyncio.gather(*(api.post("/admin/quota-requests/1/approve") for _ in range(5)))
    assert sorted(r.status for r in replies) == [200, 409, 409, 409, 409]
    assert await gateway.pool.fetchval("SELECT sum(amount) FROM token_grants") == 50_000
    assert (await api.get("/admin/users/1")).data["additionalTokens"] == 50_000


async def test_a_deleted_users_request_can_only_be_denied(gateway: Gateway, api: AdminApi) -> None:
    user_id = await make_user(gateway)
    await ask_model(gateway, ASK_PT)
    assert (await api.delete(f"/admin/users/{user_id}")).status == 200
    reply = await api.post("/admin/quota-requests/1/approve")
    assert reply.status == 422 and "id" in reply.body["details"]
    assert await gateway.pool.fetchval("SELECT count(*) FROM token_grants") == 0
    assert (await api.post("/admin/quota-requests/1/deny")).status == 200


async def test_a_bad_note_is_422_and_changes_nothing(gateway: Gateway, api: AdminApi) -> None:
    await make_user(gateway)
    await ask_model(gateway, ASK_PT)
    for note in ("x" * 501, 5, ["a"]):
        reply = await api.post("/admin/quota-requests/1/approve", json={"note": note})
        assert reply.status == 422 and "note" in reply.body["details"]
    assert (await api.get("/admin/quota-requests/1")).data["status"] == "pending"
    assert await gateway.pool.fetchval("SELECT count(*) FROM token_grants") == 0


async def test_a_viewer_sees_requests_but_cannot_decide(gateway: Gateway, api: AdminApi) -> None:
    await make_user(gateway)
    await ask_model(gateway, ASK_PT)
    assert (await api.get("/admin/quota-requests", role="viewer")).status == 200
    assert (await api.post("/admin/quota-requests/1/approve", role="viewer")).status == 403
    assert (await api.get("/admin/quota-requests/1")).data["status"] == "pending"


# -- the panel -----------------------------------------------------------------------------------


async def test_the_panel_lists_pending_requests_and_approves_one(gateway: Gateway, panel: Panel) -> None:
    await make_user(gateway)
    await ask_model(gateway, ASK_PT)
    resp, html = await panel.get("/admin/quota-requests")
    assert resp.status == 200
    assert 'href="/admin/quota-requests"' in html  # in the navigation
    assert "relatório do trimestre" in html and 'action="/admin/quota-requests/1/approve"' in html
    resp, _ = await panel.post("/admin/quota-requests/1/approve", data={"note": "ok"})
    assert resp.status == 303 and resp.headers["Location"] == "/admin/quota-requests"
    row = await gateway.pool.fetchrow("SELECT status, decision_note FROM quota_requests WHERE id = 1")
    assert (row["status"], row["decision_note"]) == ("approved", "ok")
    _, html = await panel.get("/admin/quota-requests")
    assert "relatório do trimestre" not in html  # no longer pending
    _, html = await panel.get("/admin/quota-requests?status=approved")
    assert "relatório do trimestre" in html


async def test_the_panel_refuses_a_decision_without_csrf(gateway: Gateway, panel: Panel) -> None:
    await make_user(gateway)
    await ask_model(gateway, ASK_PT)
    resp, _ = await panel.post("/admin/quota-requests/1/deny", csrf_token=False)
    assert resp.status == 403
    assert (await gateway.pool.fetchval("SELECT status FROM quota_requests WHERE id = 1")) == "pending"


async def test_the_users_panel_page_and_api_show_the_forecast(gateway: Gateway, panel: Panel, api: AdminApi) -> None:
    user_id = await make_user(gateway, monthly_limit=100_000)
    await gateway.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    await gateway.flush_ledger()
    reply = await api.get(f"/admin/users/{user_id}")
    forecast = reply.data["forecast"]
    assert forecast["windowTokens"] == 36 and forecast["dailyPace"] > 0 and forecast["runsOutAt"] is not None
    _, html = await panel.get(f"/admin/users/{user_id}")
    assert 'id="user-forecast"' in html and "tokens por dia no ritmo recente" in html


async def test_admin_grant_is_audited_with_the_request(gateway: Gateway, api: AdminApi) -> None:
    await make_user(gateway)
    await ask_model(gateway, ASK_PT)
    await api.post("/admin/quota-requests/1/approve")
    grant = await gateway.pool.fetchrow("SELECT reason, actor FROM token_grants")
    assert grant["reason"] == "quota request #1: relatório do trimestre" and grant["actor"] == "admin@solaris.test"
