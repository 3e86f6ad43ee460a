"""Sign-in with the company's identity provider: the OpenID Connect authorization code flow with
PKCE (S256), as a relying party.

1. `begin` makes a `state`, a `nonce` and a PKCE verifier, keeps them in Redis for ten minutes under
   the state, bound to the browser by the digest of a random value the browser keeps in a short-lived
   cookie, and returns the provider's authorization URL.
2. `finish` takes the state back exactly once (GETDEL: a replayed callback finds nothing), checks the
   browser's cookie against it, exchanges the code (with the verifier and the client's credentials),
   and verifies the ID token against the provider's keys (`admin.oidc_tokens`).

The provider's endpoints come from its discovery document; that document and the keys are cached
(the keys fetched again, at most every few seconds, when a token names a key we do not have: the
provider rotated its keys). The client secret is only ever sent to the token endpoint: it is in no
log line, no error message and no API answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
import redis.asyncio as aioredis
from aiohttp import web

from admin.http import ROOT_APP
from admin.oidc_tokens import Expected, UnknownSigningKey, verify_id_token
from runtime.appkeys import SETTINGS
from runtime.settings import Settings

STATE_TTL_SECONDS = 600
DISCOVERY_TTL_SECONDS = 3600
JWKS_REFETCH_SECONDS = 10
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
MAX_DOCUMENT_BYTES = 512 * 1024
BROWSER_COOKIE = "solaris_oidc"
STATE_KEY = "sol:oidc:state:"
# Each start keeps a state in Redis for ten minutes: an address may start this many in that time,
# so that a loop of anonymous requests cannot fill Redis (a person needs a handful).
STARTS_PER_ADDRESS = 60
STARTS_KEY = "sol:oidc:starts:"
# KEYS[1] the address's count; ARGV[1] its window in seconds. Returns the count with this start.
COUNT_START = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""


class OidcError(Exception):
    """The sign-in cannot go on. `reason` is for the audit log; it never holds a secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooManyStarts(OidcError):
    """This address has started more sign-ins than STARTS_PER_ADDRESS in the state's lifetime."""


class BadState(OidcError):
    """The callback's state is unknown, used, expired, or not this browser's."""


class SignInCancelled(OidcError):
    """The provider sent the browser back without signing the person in (they cancelled, say)."""


class ProviderError(OidcError):
    """The provider answered with an error, or could not be reached or understood."""


@dataclass(frozen=True, slots=True)
class Started:
    authorization_url: str
    browser_value: str  # for the short-lived cookie that binds the state to this browser


@dataclass(frozen=True, slots=True)
class Finished:
    claims: dict[str, Any]
    next: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def pkce_challenge(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass
class OidcClient:
    settings: Settings
    http: aiohttp.ClientSession
    _discovery: dict[str, Any] | None = None
    _discovered_at: float = 0.0
    _keys: list[dict[str, Any]] = field(default_factory=list)
    _keys_at: float = 0.0

    @property
    def issuer(self) -> str:
        return self.settings.oidc_issuer

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self.http.get(url, timeout=HTTP_TIMEOUT) as resp:
                body = await resp.content.read(MAX_DOCUMENT_BYTES + 1)
                if resp.status != 200 or len(body) > MAX_DOCUMENT_BYTES:
                    raise ProviderError(f"GET {url} answered {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(f"GET {url} failed: {type(exc).__name__}") from None
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProviderError(f"GET {url} did not answer JSON") from None
        if not isinstance(value, dict):
            raise ProviderError(f"GET {url} did not answer a JSON object")
        return value

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None or time.monotonic() - self._discovered_at > DISCOVERY_TTL_SECONDS:
            document = await self._get_json(self.issuer + "/.well-known/openid-configuration")
            if document.get("issuer") != self.issuer:  # OIDC Discovery 4.3: must match exactly
                raise ProviderError("the discovery document names another issuer")
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(document.get(name), str):
                    raise ProviderError(f"the discovery document has no {name}")
            methods = document.get("code_challenge_methods_supported")
            if isinstance(methods, list) and "S256" not in methods:
                raise ProviderError("the provider does not support PKCE with S256")
            self._discovery, self._discovered_at = document, time.monotonic()
        return self._discovery

    async def keys(self, *, refresh: bool = False) -> list[dict[str, Any]]:
        stale = time.monotonic() - self._keys_at > DISCOVERY_TTL_SECONDS
        may_refetch = time.monotonic() - self._keys_at > JWKS_REFETCH_SECONDS
        if not self._keys or stale or (refresh and may_refetch):
            document = await self._get_json((await self.discovery())["jwks_uri"])
            keys = document.get("keys")
            if not isinstance(keys, list):
                raise ProviderError("the provider's JWKS has no keys")
            self._keys, self._keys_at = [k for k in keys if isinstance(k, dict)], time.monotonic()
        return self._keys

    async def begin(self, redis: aioredis.Redis, next_page: str, address: str | None) -> Started:
        starts = await redis.eval(COUNT_START, 1, STARTS_KEY + (address or "unknown"), STATE_TTL_SECONDS)
        if int(starts) > STARTS_PER_ADDRESS:
            raise TooManyStarts("too many sign-ins started from this address")
        discovery = await self.discovery()
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        browser = secrets.token_urlsafe(32)
        record = {"nonce": nonce, "verifier": verifier, "browser": _digest(browser), "next": next_page}
        await redis.set(STATE_KEY + _digest(state), orjson.dumps(record), ex=STATE_TTL_SECONDS)
        query = {
            "response_type": "code",
            "client_id": self.settings.oidc_client_id,
            "redirect_uri": self.settings.oidc_redirect_url,
            "scope": self.settings.oidc_scopes,
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        endpoint = discovery["authorization_endpoint"]
        return Started(endpoint + ("&" if "?" in endpoint else "?") + urlencode(query), browser)

    async def _take_state(self, redis: aioredis.Redis, state: str, browser: str | None) -> dict[str, Any]:
        if not state or len(state) > 200:
            raise BadState("no state")
        raw = await redis.getdel(STATE_KEY + _digest(state))
        if raw is None:
            raise BadState("unknown, used or expired state")
        record: dict[str, Any] = orjson.loads(raw)
        if not browser or not hmac.compare_digest(record["browser"], _digest(browser)):
            raise BadState("the state belongs to another browser")
        return record

    async def _exchange(self, code: str, verifier: str) -> dict[str, Any]:
        discovery = await self.discovery()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.settings.oidc_redirect_url,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        client_id, secret = self.settings.oidc_client_id, self.settings.oidc_client_secret
        methods = discovery.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        if secret and "client_secret_basic" in methods:  # RFC 6749 2.3.1: form-encoded, then Basic
            pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        else:
            form["client_id"] = client_id
            if secret:
                form["client_secret"] = secret
        try:
            async with self.http.post(
                discovery["token_endpoint"], data=form, headers=headers, timeout=HTTP_TIMEOUT
            ) as resp:
                body = await resp.content.read(MAX_DOCUMENT_BYTES)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(f"the token endpoint failed: {type(exc).__name__}") from None
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            answer = None
        if status != 200 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else None
            raise ProviderError(f"the token endpoint answered {status} {str(error)[:100] if error else ''}".strip())
        return answer

    async def finish(self, redis: aioredis.Redis, params: Mapping[str, str], browser: str | None) -> Finished:
        """The verified ID token claims of a callback; raises BadState, ProviderError or InvalidIdToken."""
        record = await self._take_state(redis, params.get("state", ""), browser)
        if "iss" in params and params["iss"] != self.issuer:  # RFC 9207: a mix-up with another provider
            raise ProviderError("the callback names another issuer")
        if "error" in params:  # the user refused, or the provider would not sign them in
            raise SignInCancelled(f"the provider did not sign in: {params['error'][:100]}")
        code = params.get("code", "")
        if not code or len(code) > 2048:
            raise ProviderError("no authorization code")
        answer = await self._exchange(code, record["verifier"])
        token = answer.get("id_token")
        if not isinstance(token, str):
            raise ProviderError("the token endpoint gave no ID token")
        expected = Expected(self.issuer, self.settings.oidc_client_id, record["nonce"])
        try:
            claims = verify_id_token(token, await self.keys(), expected)
        except UnknownSigningKey:
            claims = verify_id_token(token, await self.keys(refresh=True), expected)
        if "email" not in claims or self.settings.oidc_groups_claim not in claims:
            claims = {**await self._userinfo(answer.get("access_token"), claims["sub"]), **claims}
        return Finished(claims, record["next"])

    async def _userinfo(self, access_token: object, subject: str) -> dict[str, Any]:
        """The userinfo answer, for providers that keep the e-mail or the groups out of the ID token
        (OIDC Core 5.4); {} when there is no endpoint or no access token. Its `sub` must be the ID
        token's (OIDC Core 5.3.2), or it could describe someone else."""
        endpoint = (await self.discovery()).get("userinfo_endpoint")
        if not isinstance(endpoint, str) or not isinstance(access_token, str):
            return {}
        headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        try:
            async with self.http.get(endpoint, headers=headers, timeout=HTTP_TIMEOUT) as resp:
                body = await resp.content.read(MAX_DOCUMENT_BYTES)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(f"the userinfo endpoint failed: {type(exc).__name__}") from None
        try:
            info = orjson.loads(body) if status == 200 else None
        except orjson.JSONDecodeError:
            info = None
        if not isinstance(info, dict):
            raise ProviderError(f"the userinfo endpoint answered {status} without a JSON object")
        if info.get("sub") != subject:
            raise ProviderError("the userinfo answer is about another subject")
        return info


OIDC = web.AppKey("oidc_client", OidcClient)


async def oidc_ctx(panel: web.Application) -> AsyncIterator[None]:
    """The relying party's own HTTP session, while sign-in with a provider is configured."""
    settings = panel[ROOT_APP][SETTINGS]
    if not settings.oidc_issuer:
        yield
        return
    async with aiohttp.ClientSession() as http:
        panel[OIDC] = OidcClient(settings, http)
        yield
