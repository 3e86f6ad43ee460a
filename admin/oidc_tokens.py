"""Checking an OpenID Connect ID token: its signature against the provider's published keys (JWKS),
then its claims (issuer, audience, expiry, issue time, nonce).

The signature is checked with `cryptography` (RSA PKCS#1 v1.5 and PSS, ECDSA on the NIST curves).
Only asymmetric algorithms are accepted: `none` and the HMAC family (which would let anyone who
knows the client secret, or nobody, sign a token) are refused before any key is looked at.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

# Clocks of the gateway and the provider may disagree by this much (seconds) on exp and iat.
LEEWAY_SECONDS = 60
MAX_TOKEN_BYTES = 16 * 1024

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}
_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "ES256": (ec.SECP256R1(), 32),
    "ES384": (ec.SECP384R1(), 48),
    "ES512": (ec.SECP521R1(), 66),
}
_CURVE_NAMES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})


class InvalidIdToken(ValueError):
    """The ID token is malformed, wrongly signed, or its claims do not fit this sign-in."""


class UnknownSigningKey(InvalidIdToken):
    """No published key has the token's key id: the provider may have rotated its keys."""


@dataclass(frozen=True, slots=True)
class Expected:
    issuer: str
    client_id: str
    nonce: str


def b64url_decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidIdToken("not base64url") from exc


def _int(value: object) -> int:
    if not isinstance(value, str):
        raise InvalidIdToken("a key parameter is missing")
    return int.from_bytes(b64url_decode(value), "big")


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidIdToken("not JSON") from exc
    if not isinstance(value, dict):
        raise InvalidIdToken("not a JSON object")
    return value


def split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """Header, claims, signed input and signature of a compact JWS (not yet verified)."""
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        raise InvalidIdToken("not a signed JWT")
    head, body, signature = token.split(".")
    return (
        _json_object(b64url_decode(head)),
        _json_object(b64url_decode(body)),
        f"{head}.{body}".encode("ascii"),
        b64url_decode(signature),
    )


def _pick_key(header: Mapping[str, Any], keys: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    alg = header["alg"]
    kty = "EC" if alg.startswith("ES") else "RSA"
    usable = [k for k in keys if k.get("kty") == kty and k.get("use", "sig") == "sig" and k.get("alg", alg) == alg]
    kid = header.get("kid")
    if kid is not None:
        usable = [k for k in usable if k.get("kid") == kid]
    if len(usable) != 1:
        raise UnknownSigningKey(f"no single published {kty} key for kid {kid!r}")
    return usable[0]


def verify_signature(header: Mapping[str, Any], signed: bytes, signature: bytes, jwk: Mapping[str, Any]) -> None:
    alg = str(header["alg"])
    digest = _HASHES[alg[2:]]()
    try:
        if alg.startswith("ES"):
            curve, size = _CURVES[alg]
            if jwk.get("crv") != _CURVE_NAMES[alg] or len(signature) != 2 * size:
                raise InvalidIdToken("the signature does not fit the key's curve")
            public = ec.EllipticCurvePublicNumbers(_int(jwk.get("x")), _int(jwk.get("y")), curve).public_key()
            r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            public.verify(encode_dss_signature(r, s), signed, ec.ECDSA(digest))
        else:
            rsa_key = rsa.RSAPublicNumbers(_int(jwk.get("e")), _int(jwk.get("n"))).public_key()
            if rsa_key.key_size < 2048:
                raise InvalidIdToken("the RSA key is too short")
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if alg.startswith("RS")
                else padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.DIGEST_LENGTH)
            )
            rsa_key.verify(signature, signed, pad, digest)
    except InvalidSignature as exc:
        raise InvalidIdToken("bad signature") from exc
    except ValueError as exc:  # a point not on the curve, a malformed key
        if isinstance(exc, InvalidIdToken):
            raise
        raise InvalidIdToken(f"unusable key: {exc}") from exc


def check_claims(claims: Mapping[str, Any], expected: Expected, now: float) -> None:
    if claims.get("iss") != expected.issuer:
        raise InvalidIdToken("wrong issuer")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    if expected.client_id not in audiences:
        raise InvalidIdToken("wrong audience")
    if len(audiences) > 1 and claims.get("azp") != expected.client_id:
        raise InvalidIdToken("wrong authorized party")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or isinstance(exp, bool) or exp + LEEWAY_SECONDS <= now:
        raise InvalidIdToken("expired")
    if not isinstance(iat, int | float) or isinstance(iat, bool) or iat - LEEWAY_SECONDS > now:
        raise InvalidIdToken("issued in the future")
    if not isinstance(claims.get("nonce"), str) or claims["nonce"] != expected.nonce:
        raise InvalidIdToken("wrong nonce")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise InvalidIdToken("no subject")


def verify_id_token(
    token: str, keys: Sequence[Mapping[str, Any]], expected: Expected, now: float | None = None
) -> dict[str, Any]:
    """The token's claims once its signature and claims check out; raises InvalidIdToken (or
    UnknownSigningKey, when the caller should fetch the keys again and retry once)."""
    header, claims, signed, signature = split(token)
    if header.get("alg") not in ALGORITHMS:
        raise InvalidIdToken(f"algorithm {header.get('alg')!r} is not accepted")
    if "crit" in header:
        raise InvalidIdToken("critical header parameters are not supported")
    verify_signature(header, signed, signature, _pick_key(header, keys))
    check_claims(claims, expected, time.time() if now is None else now)
    return claims
