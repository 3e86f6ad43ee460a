"""Sign-in to the panel with the company's identity provider (OpenID Connect), against a real provider
(the npm `oidc-provider` package under Node, `tests/oidc_support.py`): the code flow with PKCE, the
ID token checked against the provider's keys, state and nonce, the role mapped from the groups, the
account created or linked by e-mail, and every refusal (bad state, bad nonce, wrong audience,
expired token, unmapped group, disabled account)."""

from __future__ import annotations

import base64
import logging
import time
from urllib.parse import parse_qs, urljoin, urlsplit

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from yarl import URL

from admin import accounts as admin_accounts
from admin import oidc
from admin.oidc_tokens import Expected, InvalidIdToken, UnknownSigningKey, verify_id_token
from admin.routes import API_ROUTES
from metering.audit import Actor
from runtime.settings import SettingsError, load_settings
from tests.admin_client import PASSWORD, insert_account
from tests.conftest import Gateway
from tests.oidc_support import (  # noqa: F401 - fixtures
    CLIENT_ID,
    CLIENT_SECRET,
    ES_CLIENT_ID,
    PUBLIC_CLIENT_ID,
    Provider,
    StartGateway,
    browser_session,
    conforming_provider_fixture,
    needs_provider,
    oidc_gateway_fixture,
    oidc_gateway_with_fixture,
    provider_fixture,
    sign_in,
    to_callback,
)
from tests.test_mailer import free_port

pytestmark = needs_provider

ACCOUNT = (
    "SELECT email, name, role, permissions, login_count, last_login, is_active FROM admin_accounts WHERE email = $1"
)


async def audit_rows(gateway: Gateway, action: str) -> list[dict[str, object]]:
    rows = await gateway.pool.fetch("SELECT * FROM audit_log WHERE action = $1 ORDER BY id", action)
    return [
        {**dict(r), "details": orjson.loads(r["details"]) if isinstance(r["details"], str) else r["details"]}
        for r in rows
    ]


async def session_works(session: object, gateway: Gateway) -> bool:
    async with session.get(gateway.url + "/admin/session", allow_redirects=False) as resp:  # type: ignore[attr-defined]
        return bool(resp.status == 204)


# -- the flow -----------------------------------------------------------------------------------


async def test_a_mapped_group_signs_in_creates_the_account_and_counts_the_login(oidc_gateway: Gateway) -> None:
    async with browser_session() as session:
        start = await session.get(oidc_gateway.url + "/admin/oidc/start?next=/admin/users", allow_redirects=False)
        query = parse_qs(urlsplit(start.headers["Location"]).query)
        assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
        assert query["client_id"] == [CLIENT_ID] and "nonce" in query and "state" in query
        assert CLIENT_SECRET not in start.headers["Location"]
        reply = await sign_in(session, oidc_gateway, "ana@corp.test", "/admin/users")
        assert reply.status == 303 and reply.headers["Location"] == "/admin/users"
        assert await session_works(session, oidc_gateway)
    row = await oidc_gateway.pool.fetchrow(ACCOUNT, "ana@corp.test")
    assert (row["name"], row["role"], row["login_count"], row["is_active"]) == ("Ana Lima", "admin", 1, True)
    assert row["last_login"] is not None
    [created] = await audit_rows(oidc_gateway, "admin.create")
    assert created["details"]["method"] == "oidc" and created["details"]["groups"] == ["gw-admins"]
    [login] = await audit_rows(oidc_gateway, "auth.login")
    assert login["success"] and login["details"]["method"] == "oidc"

    async with browser_session() as again:  # a second sign-in: the same account, counted again
        assert (await sign_in(again, oidc_gateway, "ana@corp.test")).status == 303
    assert (await oidc_gateway.pool.fetchrow(ACCOUNT, "ana@corp.test"))["login_count"] == 2
    assert len(await audit_rows(oidc_gateway, "admin.create")) == 1


async def test_the_highest_mapped_role_wins_and_an_es256_client_works(oidc_gateway_with: StartGateway) -> None:
    gateway = await oidc_gateway_with(oidc_client_id=ES_CLIENT_ID)  # ID tokens signed with ES256
    async with browser_session() as session:
        assert (await sign_in(session, gateway, "otto@corp.test")).status == 303  # groups staff, gw-ops
    row = await gateway.pool.fetchrow(ACCOUNT, "otto@corp.test")
    assert (row["role"], list(row["permissions"])) == ("user", ["operator"])


async def test_the_email_and_groups_are_read_from_userinfo_when_the_id_token_has_none(
    oidc_gateway_with: StartGateway, conforming_provider: Provider
) -> None:
    gateway = await oidc_gateway_with(via=conforming_provider)
    async with browser_session() as session:
        assert (await sign_in(session, gateway, "otto@corp.test")).status == 303  # 403 (no e-mail) without userinfo
    row = await gateway.pool.fetchrow(ACCOUNT, "otto@corp.test")
    assert (row["role"], list(row["permissions"]), row["name"]) == ("user", ["operator"], "Otto")


async def test_a_public_client_signs_in_with_pkce_alone(oidc_gateway_with: StartGateway) -> None:
    gateway = await oidc_gateway_with(oidc_client_id=PUBLIC_CLIENT_ID, oidc_client_secret="")
    async with browser_session() as session:
        assert (await sign_in(session, gateway, "vera@corp.test")).status == 303
        assert await session_works(session, gateway)


async def test_a_wrong_pkce_verifier_is_refused_by_the_provider(oidc_gateway: Gateway) -> None:
    async with browser_session() as session:
        callback = await to_callback(session, oidc_gateway, "ana@corp.test")
        [key] = await oidc_gateway.redis.keys(oidc.STATE_KEY + "*")
        record = orjson.loads(await oidc_gateway.redis.get(key))
        await oidc_gateway.redis.set(key, orjson.dumps({**record, "verifier": "x" * 64}), ex=60)
        reply = await session.get(callback, allow_redirects=False)
        assert reply.status == 502 and not await session_works(session, oidc_gateway)
    [failure] = await audit_rows(oidc_gateway, "auth.login")
    assert failure["error_message"] == "the token endpoint answered 400 invalid_grant"


async def test_a_local_account_is_linked_by_email_follows_the_groups_and_keeps_its_password(
    oidc_gateway: Gateway,
) -> None:
    await insert_account(oidc_gateway.pool, "ana@corp.test", "Ana", "admin", [])  # the break-glass admin
    await insert_account(oidc_gateway.pool, "Vera@Corp.test", "Vera local", "admin", [])
    async with browser_session() as session:
        assert (await sign_in(session, oidc_gateway, "vera@corp.test")).status == 303
    row = await oidc_gateway.pool.fetchrow("SELECT * FROM admin_accounts WHERE lower(email) = 'vera@corp.test'")
    assert (row["name"], row["role"], list(row["permissions"]), row["login_count"]) == (
        "Vera local", "user", ["viewer"], 1,
    )  # fmt: skip
    [link] = await audit_rows(oidc_gateway, "admin.oidc_link")
    assert link["resource_id"] == str(row["id"]) and link["details"]["subject"] == "vera@corp.test"
    [update] = await audit_rows(oidc_gateway, "admin.update")
    assert (update["details"]["before"]["role"], update["details"]["after"]["role"]) == ("admin", "viewer")
    async with browser_session() as session:
        assert (await sign_in(session, oidc_gateway, "vera@corp.test")).status == 303
    assert len(await audit_rows(oidc_gateway, "admin.oidc_link")) == 1  # linked once
    assert await oidc_gateway.pool.fetchval("SELECT count(*) FROM admin_accounts") == 2  # none created
    async with browser_session() as session:  # break-glass: the password still works
        reply = await session.post(
            oidc_gateway.url + "/api/auth/login", json={"email": "vera@corp.test", "password": PASSWORD}
        )
        assert reply.status == 200


# -- refusals -----------------------------------------------------------------------------------


async def test_a_callback_with_a_wrong_reused_or_foreign_state_is_refused(oidc_gateway: Gateway) -> None:
    async with browser_session() as session:
        callback = await to_callback(session, oidc_gateway, "ana@corp.test")
        forged = callback.replace("state=", "state=x")
        reply = await session.get(forged, allow_redirects=False)
        assert reply.status == 400 and "expirou ou não é válida" in await reply.text()
    async with browser_session() as session:  # the state, but not from the browser that started
        callback = await to_callback(session, oidc_gateway, "ana@corp.test")
    async with browser_session() as stranger:
        assert (await stranger.get(callback, allow_redirects=False)).status == 400
    async with browser_session() as session:  # a callback replayed after it was used
        callback = await to_callback(session, oidc_gateway, "ana@corp.test")
        assert (await session.get(callback, allow_redirects=False)).status == 303
        assert (await session.get(callback, allow_redirects=False)).status == 400
    assert await oidc_gateway.pool.fetchval("SELECT login_count FROM admin_accounts") == 1
    failures = [r for r in await audit_rows(oidc_gateway, "auth.login") if not r["success"]]
    assert len(failures) == 3 and all(r["details"] == {"method": "oidc"} for r in failures)


async def test_a_person_who_cancels_at_the_provider_is_told_so(oidc_gateway: Gateway) -> None:
    async with browser_session() as session:
        url = oidc_gateway.url + "/admin/oidc/start"
        while "/interaction/" not in url:  # to the provider's login page
            async with session.get(url, allow_redirects=False) as resp:
                url = urljoin(url, resp.headers["Location"])
        async with session.get(url + "/abort", allow_redirects=True) as resp:  # its "cancel" link
            assert resp.status == 401 and "não concluiu a sua entrada" in await resp.text()
            assert "/admin/oidc/callback" in str(resp.url) and "error=access_denied" in str(resp.url)
    [failure] = await audit_rows(oidc_gateway, "auth.login")
    assert failure["error_message"] == "the provider did not sign in: access_denied"


async def test_a_callback_naming_another_issuer_is_refused(oidc_gateway: Gateway) -> None:
    async with browser_session() as session:
        callback = await to_callback(session, oidc_gateway, "ana@corp.test")
        assert "iss=" in callback  # the provider names itself (RFC 9207)
        mixed_up = callback.replace("iss=", "iss=https%3A%2F%2Fother.example.com&was=")
        assert (await session.get(mixed_up, allow_redirects=False)).status == 502
        assert not await session_works(session, oidc_gateway)
    [failure] = await audit_rows(oidc_gateway, "auth.login")
    assert failure["error_message"] == "the callback names another issuer"


async def test_an_id_token_with_another_nonce_is_refused(oidc_gateway: Gateway) -> None:
    async with browser_session() as session:
        callback = await to_callback(session, oidc_gateway, "ana@corp.test")
        [key] = await oidc_gateway.redis.keys(oidc.STATE_KEY + "*")
        record = orjson.loads(await oidc_gateway.redis.get(key))
        await oidc_gateway.redis.set(key, orjson.dumps({**record, "nonce": "another-nonce"}), ex=60)
        reply = await session.get(callback, allow_redirects=False)
        assert reply.status == 401 and "não pôde ser aceita" in await reply.text()
        assert not await session_works(session, oidc_gateway)
    assert await oidc_gateway.pool.fetchval("SELECT count(*) FROM admin_accounts") == 0
    [failure] = await audit_rows(oidc_gateway, "auth.login")
    assert not failure["success"] and failure["error_message"] == "wrong nonce"


async def test_an_unmapped_group_is_refused_with_a_page_in_both_languages(oidc_gateway: Gateway) -> None:
    async with browser_session() as session:
        reply = await sign_in(session, oidc_gateway, "zed@corp.test")  # groups: staff only
        assert reply.status == 403
        assert "nenhum grupo autorizado" in await reply.text()
        assert not await session_works(session, oidc_gateway)
    async with browser_session() as session:
        session.cookie_jar.update_cookies({"solaris_lang": "en"}, response_url=URL(oidc_gateway.url + "/admin/"))
        reply = await sign_in(session, oidc_gateway, "zed@corp.test")
        assert reply.status == 403 and "in no group allowed to use this panel" in await reply.text()
    assert await oidc_gateway.pool.fetchval("SELECT count(*) FROM admin_accounts") == 0
    failures = await audit_rows(oidc_gateway, "auth.login")
    assert [r["error_message"] for r in failures] == ["no mapped group", "no mapped group"]
    assert failures[0]["details"]["groups"] == ["staff"]


async def test_a_disabled_account_cannot_sign_in_through_the_provider(oidc_gateway: Gateway) -> None:
    account_id = await insert_account(oidc_gateway.pool, "ana@corp.test", "Ana", "user", ["viewer"])
    await insert_account(oidc_gateway.pool, "root@corp.test", "Root", "admin", [])
    await admin_accounts.set_active(oidc_gateway.pool, Actor(None, "cli"), account_id, False)
    async with browser_session() as session:
        reply = await sign_in(session, oidc_gateway, "ana@corp.test")
        assert reply.status == 403 and "desativada" in await reply.text()
        assert not await session_works(session, oidc_gateway)
    row = await oidc_gateway.pool.fetchrow(ACCOUNT, "ana@corp.test")
    assert (row["login_count"], row["role"], row["is_active"]) == (0, "user", False)  # no role change either


async def test_an_email_the_provider_has_not_verified_is_refused(oidc_gateway: Gateway) -> None:
    await insert_account(oidc_gateway.pool, "eve@corp.test", "Eve", "admin", [])
    async with browser_session() as session:
        assert (await sign_in(session, oidc_gateway, "eve@corp.test")).status == 403
    assert (await oidc_gateway.pool.fetchrow(ACCOUNT, "eve@corp.test"))["login_count"] == 0


async def test_the_last_active_admin_is_not_demoted_by_the_provider(oidc_gateway: Gateway) -> None:
    await insert_account(oidc_gateway.pool, "zed@corp.test", "Zed", "admin", [])
    await insert_account(oidc_gateway.pool, "vera@corp.test", "Vera", "admin", [])
    await oidc_gateway.pool.execute("UPDATE admin_accounts SET is_active = false WHERE email = 'zed@corp.test'")
    async with browser_session() as session:
        assert (await sign_in(session, oidc_gateway, "vera@corp.test")).status == 303  # gw-viewers
    assert (await oidc_gateway.pool.fetchrow(ACCOUNT, "vera@corp.test"))["role"] == "admin"


# -- the login page and the configuration ----------------------------------------------------------


async def test_the_login_page_offers_both_ways_only_when_a_provider_is_set(
    oidc_gateway: Gateway, gateway: Gateway
) -> None:
    async with browser_session() as session:
        page = await (await session.get(oidc_gateway.url + "/admin/login")).text()
        assert 'id="oidc-login"' in page and 'name="password"' in page
        plain = await (await session.get(gateway.url + "/admin/login")).text()
        assert 'id="oidc-login"' not in plain and 'name="password"' in plain
        assert (await session.get(gateway.url + "/admin/oidc/start", allow_redirects=False)).status == 404
        assert (await session.get(gateway.url + "/admin/oidc/callback?state=x", allow_redirects=False)).status == 404


async def test_the_client_secret_is_never_logged_nor_returned(
    oidc_gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with browser_session() as session:
        assert (await sign_in(session, oidc_gateway, "ana@corp.test")).status == 303
        await sign_in(session, oidc_gateway, "zed@corp.test")
        token = await session.post(
            oidc_gateway.url + "/api/auth/login", json={"email": "x@corp.test", "password": "wrong password"}
        )
        assert token.status == 401
        from_api, read = "", 0
        [admin_token] = [c.value for c in session.cookie_jar if c.key == "solaris_session"]
        headers = {"Authorization": f"Bearer {admin_token}"}
        for route in API_ROUTES:  # every GET route of the API without a path parameter
            if route.method != "GET" or "{" in route.path:
                continue
            async with session.get(oidc_gateway.url + "/api" + route.path, headers=headers) as resp:
                from_api += await resp.text()
                read += resp.status == 200
    assert read >= 10  # the admin read them all (the session is an admin's)
    assert CLIENT_SECRET not in from_api
    assert CLIENT_SECRET not in caplog.text
    assert CLIENT_SECRET not in repr(oidc_gateway.settings) and CLIENT_SECRET not in str(oidc_gateway.settings)
    assert CLIENT_SECRET not in str(await oidc_gateway.pool.fetch("SELECT details, error_message FROM audit_log"))


async def test_one_address_may_start_only_so_many_sign_ins(oidc_gateway: Gateway) -> None:
    async with browser_session() as session:
        for _ in range(oidc.STARTS_PER_ADDRESS):
            reply = await session.get(oidc_gateway.url + "/admin/oidc/start", allow_redirects=False)
            assert reply.status == 303
        reply = await session.get(oidc_gateway.url + "/admin/oidc/start", allow_redirects=False)
        assert reply.status == 429 and "Muitas requisições" in await reply.text()
    assert len(await oidc_gateway.redis.keys(oidc.STATE_KEY + "*")) == oidc.STARTS_PER_ADDRESS


async def test_an_unreachable_or_impostor_provider_gives_a_clear_page(oidc_gateway_with: StartGateway) -> None:
    async def discovery(request: web.Request) -> web.Response:  # a provider naming another issuer
        return web.json_response({"issuer": "https://idp.example.com", "authorization_endpoint": "https://x/auth",
                                  "token_endpoint": "https://x/token", "jwks_uri": "https://x/jwks"})  # fmt: skip

    impostor = web.Application()
    impostor.router.add_get("/.well-known/openid-configuration", discovery)
    server = TestServer(impostor, host="127.0.0.1")
    await server.start_server()
    try:
        for issuer in (f"http://127.0.0.1:{free_port()}", str(server.make_url("")).rstrip("/")):
            gateway = await oidc_gateway_with(port=free_port(), oidc_issuer=issuer)
            async with browser_session() as session:
                reply = await session.get(gateway.url + "/admin/oidc/start", allow_redirects=False)
                assert reply.status == 502 and "não está acessível" in await reply.text()
    finally:
        await server.close()


def test_the_role_mapping_is_a_json_object_of_known_roles(tmp_path: object) -> None:
    settings = load_settings({"SOLARIS_OIDC_ROLE_MAPPING": '{"cn=ops,ou=groups": "operator", "gw": "admin"}'})
    assert settings.oidc_role_mapping == (("cn=ops,ou=groups", "operator"), ("gw", "admin"))
    with pytest.raises(SettingsError, match="SOLARIS_OIDC_ROLE_MAPPING"):
        load_settings({"SOLARIS_OIDC_ROLE_MAPPING": '{"gw": "root"}'})
    with pytest.raises(SettingsError, match="SOLARIS_OIDC_ROLE_MAPPING"):
        load_settings({"SOLARIS_OIDC_ROLE_MAPPING": '["gw"]'})


def test_a_provider_without_client_id_or_redirect_url_stops_before_anything_starts() -> None:
    """Refused by the settings themselves: a check halfway through the start (as the panel once
    made) left the services started before it running, their transactions open."""
    issuer = {"SOLARIS_OIDC_ISSUER": "https://idp.example"}
    with pytest.raises(SettingsError, match="SOLARIS_OIDC_CLIENT_ID, SOLARIS_OIDC_REDIRECT_URL"):
        load_settings(issuer)
    with pytest.raises(SettingsError, match="SOLARIS_OIDC_REDIRECT_URL"):
        load_settings({**issuer, "SOLARIS_OIDC_CLIENT_ID": "panel"})
    complete = {**issuer, "SOLARIS_OIDC_CLIENT_ID": "panel", "SOLARIS_OIDC_REDIRECT_URL": "https://gw/cb"}
    with pytest.raises(SettingsError, match="SOLARIS_OIDC_SCOPES must include openid"):
        load_settings({**complete, "SOLARIS_OIDC_SCOPES": "email groups"})
    assert load_settings(complete).oidc_issuer == "https://idp.example"


# -- the ID token against the provider's published keys ---------------------------------------------


def claims_for(provider: Provider, **changes: object) -> dict[str, object]:
    now = int(time.time())
    base = {"iss": provider.issuer, "aud": CLIENT_ID, "sub": "ana", "nonce": "n-1", "iat": now, "exp": now + 300}
    return {**base, **changes}


@pytest.fixture
async def published_keys(oidc_gateway: Gateway) -> list[dict[str, object]]:
    [panel] = [app for app in oidc_gateway.app._subapps if oidc.OIDC in app]
    return await panel[oidc.OIDC].keys()


async def test_tokens_signed_by_the_provider_keys_verify(provider: Provider, published_keys: list) -> None:  # type: ignore[type-arg]
    expected = Expected(provider.issuer, CLIENT_ID, "n-1")
    assert all("d" not in key for key in published_keys)  # only public halves are published
    for alg in ("RS256", "ES256"):
        assert verify_id_token(provider.sign(claims_for(provider), alg=alg), published_keys, expected)["sub"] == "ana"
    skewed = claims_for(provider, iat=int(time.time()) + 30, exp=int(time.time()) - 30)  # within the leeway
    assert verify_id_token(provider.sign(skewed), published_keys, expected)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": "another-client"}, "wrong audience"),
        ({"aud": [CLIENT_ID, "another-client"]}, "wrong authorized party"),
        ({"iss": "http://127.0.0.1:1"}, "wrong issuer"),
        ({"exp": -120}, "expired"),  # seconds from now, taken when the test runs (not at collection:
        ({"iat": 600}, "issued in the future"),  # a slow suite reached it 10 minutes later, no longer future)
        ({"nonce": "n-2"}, "wrong nonce"),
    ],
)
async def test_tokens_with_wrong_claims_are_refused(
    provider: Provider,
    published_keys: list,
    changes: dict[str, object],
    reason: str,  # type: ignore[type-arg]
) -> None:
    now = int(time.time())
    changes = {k: now + v if k in ("exp", "iat") else v for k, v in changes.items()}  # type: ignore[operator]
    with pytest.raises(InvalidIdToken, match=reason):
        verify_id_token(
            provider.sign(claims_for(provider, **changes)), published_keys, Expected(provider.issuer, CLIENT_ID, "n-1")
        )


async def test_forged_tokens_are_refused(provider: Provider, published_keys: list) -> None:  # type: ignore[type-arg]
    expected = Expected(provider.issuer, CLIENT_ID, "n-1")
    good = provider.sign(claims_for(provider))
    head, body, signature = good.split(".")
    tampered = body[:-4] + ("AAAA" if body[-4:] != "AAAA" else "BBBB")
    with pytest.raises(InvalidIdToken, match="bad signature|not JSON|not base64url"):
        verify_id_token(f"{head}.{tampered}.{signature}", published_keys, expected)
    for alg in ("none", "HS256"):  # no signature, or one made with a shared secret
        forged_head = base64.urlsafe_b64encode(orjson.dumps({"alg": alg, "kid": "rsa-1"})).decode().rstrip("=")
        with pytest.raises(InvalidIdToken, match="not accepted"):
            verify_id_token(f"{forged_head}.{body}.{signature}", published_keys, expected)
    impostor = Provider(
        provider.issuer, 0, rsa.generate_private_key(public_exponent=65537, key_size=2048), provider.ec_key
    )
    with pytest.raises(InvalidIdToken, match="bad signature"):  # another key under the provider's key id
        verify_id_token(impostor.sign(claims_for(provider)), published_keys, expected)
    with pytest.raises(UnknownSigningKey):
        verify_id_token(provider.sign(claims_for(provider), kid="rotated-away"), published_keys, expected)
