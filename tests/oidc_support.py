"""A real OpenID Connect provider for the panel's sign-in tests (`tests/js/oidc_provider.mjs`, the npm
`oidc-provider` package under Node), its signing keys, and a gateway configured to use it.

The test owns the provider's signing keys (an RSA and an EC key, made here and handed to the
provider), so it can also sign tokens of its own that the provider's published keys verify.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from runtime.settings import load_settings
from solaris.app import create_app
from tests.admin_client import listeners_ready
from tests.conftest import SERVICE_KEY, Gateway
from tests.fake_upstream import FakeUpstream
from tests.node import JS, NODE
from tests.test_mailer import free_port

CLIENT_ID = "solaris-gateway"
ES_CLIENT_ID = "solaris-gateway-es"
PUBLIC_CLIENT_ID = "solaris-gateway-public"  # no secret: PKCE alone
CLIENT_SECRET = "oidc-client-secret-never-shown-7f3a9c"
MAPPING = {"gw-admins": "admin", "gw-ops": "operator", "gw-viewers": "viewer"}
USERS = {
    "ana@corp.test": {"email": "ana@corp.test", "email_verified": True, "name": "Ana Lima", "groups": ["gw-admins"]},
    "otto@corp.test": {
        "email": "otto@corp.test",
        "email_verified": True,
        "name": "Otto",
        "groups": ["staff", "gw-ops"],
    },
    "vera@corp.test": {"email": "vera@corp.test", "email_verified": True, "name": "Vera", "groups": ["gw-viewers"]},
    "zed@corp.test": {"email": "zed@corp.test", "email_verified": True, "name": "Zed", "groups": ["staff"]},
    "eve@corp.test": {"email": "eve@corp.test", "email_verified": False, "name": "Eve", "groups": ["gw-admins"]},
}

needs_provider = pytest.mark.skipif(
    NODE is None or not (JS / "node_modules" / "oidc-provider").is_dir(),
    reason="Node and tests/js/node_modules are needed: npm ci --prefix tests/js (scripts/test.sh does it)",
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _n(value: int, size: int | None = None) -> str:
    return b64url(value.to_bytes(size or (value.bit_length() + 7) // 8, "big"))


@dataclass
class Provider:
    issuer: str
    gateway_port: int
    rsa_key: rsa.RSAPrivateKey
    ec_key: ec.EllipticCurvePrivateKey

    @property
    def callback(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}/admin/oidc/callback"

    def sign(self, claims: dict[str, Any], *, alg: str = "RS256", kid: str | None = None) -> str:
        """A compact JWS of `claims` signed with the provider's own key for `alg`."""
        header = {"alg": alg, "typ": "JWT", "kid": kid or ("rsa-1" if alg.startswith("RS") else "ec-1")}
        signed = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
        if alg == "RS256":
            signature = self.rsa_key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            r, s = decode_dss_signature(self.ec_key.sign(signed, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signed.decode() + "." + b64url(signature)


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    private = key.private_numbers()
    public = private.public_numbers
    return {
        "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": _n(public.n), "e": _n(public.e),
        "d": _n(private.d), "p": _n(private.p), "q": _n(private.q), "dp": _n(private.dmp1), "dq": _n(private.dmq1),
        "qi": _n(private.iqmp),
    }  # fmt: skip


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, str]:
    private = key.private_numbers()
    public = private.public_numbers
    return {
        "kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256",
        "x": _n(public.x, 32), "y": _n(public.y, 32), "d": _n(private.private_value, 32),
    }  # fmt: skip


@contextlib.contextmanager
def running_provider(*, conform: bool = False) -> Iterator[Provider]:
    """The provider under Node (it starts in about a second). `conform`: the e-mail and groups only
    in its userinfo answer, not in the ID token."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    port, gateway_port = free_port(), free_port()
    redirect = [f"http://127.0.0.1:{gateway_port}/admin/oidc/callback"]
    common = {"redirect_uris": redirect, "grant_types": ["authorization_code"], "response_types": ["code"]}
    config = {
        "port": port,
        "keys": [rsa_jwk(rsa_key, "rsa-1"), ec_jwk(ec_key, "ec-1")],
        "clients": [
            {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "token_endpoint_auth_method": "client_secret_basic",
             "id_token_signed_response_alg": "RS256", **common},
            {"client_id": ES_CLIENT_ID, "client_secret": CLIENT_SECRET, "token_endpoint_auth_method": "client_secret_post",
             "id_token_signed_response_alg": "ES256", **common},
            {"client_id": PUBLIC_CLIENT_ID, "token_endpoint_auth_method": "none", **common},
        ],
        "users": USERS,
        "conform": conform,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="solaris-oidc-") as folder:
        path = Path(folder) / "provider.json"
        path.write_text(json.dumps(config))
        assert NODE is not None
        process = subprocess.Popen(
            [NODE, str(JS / "oidc_provider.mjs"), str(path)],
            cwd=JS,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            ready = json.loads(process.stdout.readline() or "{}")
            assert ready.get("ready"), "the OIDC provider did not start"
            yield Provider(ready["issuer"], gateway_port, rsa_key, ec_key)
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module", name="provider")
def provider_fixture() -> Iterator[Provider]:
    with running_provider() as started:
        yield started


@pytest.fixture(scope="module", name="conforming_provider")
def conforming_provider_fixture() -> Iterator[Provider]:
    with running_provider(conform=True) as started:
        yield started


StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture(name="oidc_gateway_with")
async def oidc_gateway_with_fixture(
    provider: Provider, database_url: str, redis_url: str, upstream: FakeUpstream, db_pool: object, redis_client: object
) -> AsyncIterator[StartGateway]:
    """Start the gateway with sign-in through `provider` (on the port the provider's clients name)."""
    servers: list[TestServer] = []

    async def start(port: int | None = None, via: Provider | None = None, **changes: Any) -> Gateway:
        """`port`: another than the one the provider's clients name (for tests that never come back);
        `via`: another provider than `provider`."""
        idp = via or provider
        values: dict[str, Any] = {
            "database_url": database_url,
            "redis_url": redis_url,
            "litellm_base_url": upstream.url,
            "service_key": SERVICE_KEY,
            "oidc_issuer": idp.issuer,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": CLIENT_SECRET,
            "oidc_redirect_url": idp.callback,
            "oidc_scopes": "openid email profile groups",
            "oidc_role_mapping": tuple(MAPPING.items()),
            **changes,
        }
        app = create_app(load_settings({}, **values))
        server = TestServer(app, host="127.0.0.1", port=idp.gateway_port if port is None else port)
        await server.start_server()
        servers.append(server)
        gateway = Gateway(str(server.make_url("")).rstrip("/"), app)
        await listeners_ready(gateway)
        return gateway

    yield start
    for server in servers:
        await server.close()


@pytest.fixture(name="oidc_gateway")
async def oidc_gateway_fixture(oidc_gateway_with: StartGateway) -> Gateway:
    return await oidc_gateway_with()


def browser_session() -> aiohttp.ClientSession:
    """A client that keeps cookies like a browser, also those of 127.0.0.1."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


class _FormAction(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "form" and self.action is None:
            self.action = dict(attrs).get("action")


async def to_callback(session: aiohttp.ClientSession, gateway: Gateway, login: str, next_page: str = "") -> str:
    """Start a sign-in at the panel and sign in at the provider's login page as `login`; returns the
    callback URL the provider sends the browser back to (not yet visited)."""
    url = gateway.url + "/admin/oidc/start" + (f"?next={next_page}" if next_page else "")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        async with session.get(url, allow_redirects=False) as resp:
            body = await resp.text()
            if resp.status in (302, 303):
                url = urljoin(url, resp.headers["Location"])
                if url.startswith(gateway.url + "/admin/oidc/callback"):
                    return url
                continue
            assert resp.status == 200, (resp.status, body[:500])
        parser = _FormAction()
        parser.feed(body)
        assert parser.action, body[:500]
        form = {"prompt": "login", "login": login, "password": "any"}
        async with session.post(urljoin(url, parser.action), data=form, allow_redirects=False) as resp:
            assert resp.status in (302, 303), (resp.status, await resp.text())
            url = urljoin(url, resp.headers["Location"])
    raise AssertionError("the provider never sent the browser back")


async def sign_in(
    session: aiohttp.ClientSession, gateway: Gateway, login: str, next_page: str = ""
) -> aiohttp.ClientResponse:
    """The whole sign-in; returns the gateway's answer to the callback (read, not followed)."""
    callback = await to_callback(session, gateway, login, next_page)
    async with session.get(callback, allow_redirects=False) as resp:
        await resp.read()
        return resp
