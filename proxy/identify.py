"""Step 1, identify: which key is calling and which end user the request is for.

LibreChat calls with a service key (`Authorization: Bearer`, or `x-api-key` from Anthropic's SDK)
and names the end user in a header (e-mail or LibreChat user id, from its
`{{LIBRECHAT_USER_EMAIL}}` / `{{LIBRECHAT_USER_ID}}` placeholders) or in the body: `user`, then
what the dialect adds (`metadata.user_id` for Messages, `safety_identifier` for Responses). The
same order on every path. A personal key names its user by itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from metering.keys import ApiKeyService, KeyInfo
from metering.users import ProvisioningDisabled, UserService
from proxy import wording
from proxy.errors import bad_request, forbidden, unauthorized, unavailable

MAX_IDENTITY_LENGTH = 320


@dataclass(frozen=True, slots=True)
class Caller:
    key: KeyInfo
    user_id: int | None


def presented_key(headers: Mapping[str, str]) -> str:
    """The key as OpenAI's (`Authorization: Bearer`), Anthropic's (`x-api-key`) or Azure's
    (`api-key`) clients send it."""
    auth = headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return (headers.get("x-api-key") or headers.get("api-key") or "").strip()


async def authenticate(keys: ApiKeyService, headers: Mapping[str, str]) -> KeyInfo:
    key = presented_key(headers)
    if not key:
        raise unauthorized("Missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key'.")
    info = await keys.lookup(key)
    if info is None:
        raise unauthorized("Invalid or revoked API key.")
    return info


def claimed_identity(header_value: str | None, claims: Iterable[Any]) -> tuple[str | None, str | None]:
    """(e-mail, LibreChat id) from the user header, then the body's fields that name a user."""
    email: str | None = None
    librechat_id: str | None = None
    for raw in (header_value, *claims):
        if not isinstance(raw, str):
            continue
        value = raw.strip()
        # An unfilled placeholder means LibreChat did not substitute it: ignore it.
        if not value or value.startswith("{{") or len(value) > MAX_IDENTITY_LENGTH:
            continue
        if "@" in value:
            email = email or value
        else:
            librechat_id = librechat_id or value
    return email, librechat_id


async def identify(
    keys: ApiKeyService,
    users: UserService,
    headers: Mapping[str, str],
    claims: Iterable[Any],
    *,
    user_header: str,
    auto_provision: bool,
    language: str,
    key: KeyInfo | None = None,
) -> Caller:
    """The caller: its key (`key` when already authenticated) and the end user it names."""
    key = key or await authenticate(keys, headers)
    if key.kind == "personal":
        return Caller(key, key.user_id)
    email, librechat_id = claimed_identity(headers.get(user_header), claims)
    if email is None and librechat_id is None:
        raise bad_request(
            f"No end user: send the '{user_header}' header (e-mail or LibreChat user id) or the 'user' field.",
            param="user",
            code="missing_user",
        )
    try:
        user_id = await users.resolve(email, librechat_id, auto_provision=auto_provision)
    except ProvisioningDisabled:
        raise forbidden(wording.text("not_provisioned", language), "user_not_provisioned") from None
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
        # Known users are cached; a new one cannot be looked up while Postgres is away.
        raise unavailable(wording.text("unavailable", language), "directory_unavailable") from exc
    return Caller(key, user_id)
