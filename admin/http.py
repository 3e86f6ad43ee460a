"""The JSON API's building blocks: the seed's envelope, `ApiError`, and input parsing.

Handlers return `ok(...)` / `paginated(...)` and raise `ApiError` (or a domain error that the error
middleware maps); every input problem is collected per field and reported as one 422.
"""

from __future__ import annotations

import datetime as dt
import math
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import asyncpg
import orjson
import redis.asyncio as aioredis
from aiohttp import web

from metering import events
from metering.alerts import AlertService
from metering.audit import Actor
from metering.calibration import Calibration
from metering.events import EventType
from metering.keys import ApiKeyService
from metering.mailer import Mailer
from metering.period import PeriodClock
from metering.prices import PriceBook
from metering.quota import QuotaEngine
from metering.settings_store import SettingsStore
from metering.users import UserService
from runtime.appkeys import (
    ALERTS,
    API_KEYS,
    CALIBRATION,
    CLOCK,
    INVALIDATOR,
    LITELLM_HTTP,
    MAILER,
    PG,
    PRICES,
    QUOTA,
    REDIS,
    SETTINGS,
    SYSTEM,
    USERS,
)
from runtime.net import REQUEST_ID, client_address
from runtime.settings import Settings

if TYPE_CHECKING:
    from admin.auth import Principal

MAX_BODY_BYTES = 1024 * 1024
MAX_PAGE = 1_000_000
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
MAX_ID = 2**63 - 1

ROOT_APP = web.AppKey("solaris_root_app", web.Application)
AUDITED = web.RequestKey("audited", bool)  # set by a handler that has audited its own failure
# A panel page that answers a refused change with a form (422) says why here, for its audit entry.
FAILED_WITH = web.RequestKey("failed_with", Exception)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=str)


class ApiError(Exception):
    """An error answer in the seed's `ApiError` shape: `{message, code, details, timestamp}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = dict(details or {})
        self.headers = dict(headers or {})


def validation_error(details: Mapping[str, Any], message: str = "Invalid input") -> ApiError:
    return ApiError(422, "validation_error", message, details)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=dumps(body), status=status, content_type="application/json", headers=headers)


def ok(data: Any = None, message: str | None = None, status: int = 200) -> web.Response:
    body: dict[str, Any] = {"success": True, "data": data, "timestamp": now_iso()}
    if message is not None:
        body["message"] = message
    return json_response(body, status)


def paginated(items: list[Any], page: int, limit: int, total: int) -> web.Response:
    pages = math.ceil(total / limit) if limit else 0
    return json_response(
        {
            "success": True,
            "data": items,
            "pagination": {
                "page": page,
                "limit": limit,
                "total": total,
                "totalPages": pages,
                "hasNext": page < pages,
                "hasPrev": page > 1,
            },
            "timestamp": now_iso(),
        }
    )


def error_body(error: ApiError, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "success": False,
        "message": error.message,
        "code": error.code,
        "details": error.details,
        "timestamp": now_iso(),
    }
    if request_id:
        body["requestId"] = request_id
    return body


# -- the handler's view of one request --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a handler needs besides the request: who asks, as which audit actor, and (as
    properties) the app's services it may call."""

    request: web.Request
    principal: Principal | None
    actor: Actor

    @property
    def root(self) -> web.Application:
        return self.request.app[ROOT_APP]

    @property
    def timezone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.settings.timezone)

    @property
    def settings(self) -> Settings:
        return self.request.config_dict[SETTINGS]

    @property
    def pool(self) -> asyncpg.Pool:
        return self.request.config_dict[PG]

    @property
    def redis(self) -> aioredis.Redis:
        return self.request.config_dict[REDIS]

    @property
    def http(self) -> aiohttp.ClientSession:
        """The session for calls to LiteLLM (health, models, prices)."""
        return self.request.config_dict[LITELLM_HTTP]

    @property
    def system(self) -> SettingsStore:
        return self.request.config_dict[SYSTEM]

    @property
    def users(self) -> UserService:
        return self.request.config_dict[USERS]

    @property
    def keys(self) -> ApiKeyService:
        return self.request.config_dict[API_KEYS]

    @property
    def quota(self) -> QuotaEngine:
        return self.request.config_dict[QUOTA]

    @property
    def clock(self) -> PeriodClock:
        return self.request.config_dict[CLOCK]

    @property
    def alerts(self) -> AlertService:
        return self.request.config_dict[ALERTS]

    @property
    def mailer(self) -> Mailer:
        return self.request.config_dict[MAILER]

    @property
    def calibration(self) -> Calibration:
        return self.request.config_dict[CALIBRATION]

    @property
    def prices(self) -> PriceBook:
        return self.request.config_dict[PRICES]

    async def publish(self, event_type: EventType, data: Any) -> None:
        await events.publish(self.redis, event_type, data)

    async def invalidate(self, what: str) -> None:
        await self.request.config_dict[INVALIDATOR].invalidate(what)


def actor_for(request: web.Request, admin_id: int | None, label: str) -> Actor:
    return Actor(
        admin_id=admin_id,
        label=label,
        ip_address=client_address(request, request.config_dict[SETTINGS].trusted_proxies),
        user_agent=(request.headers.get("User-Agent") or "")[:500] or None,
        request_id=request.get(REQUEST_ID),
    )


# -- input ------------------------------------------------------------------------------------


async def json_body(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    """The request's JSON object. No body counts as `{}` when not `required`."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"The request body must be at most {MAX_BODY_BYTES} bytes")
    raw = b""
    while len(raw) <= MAX_BODY_BYTES:  # read(n) answers what has arrived so far, not the whole body
        chunk = await request.content.read(MAX_BODY_BYTES + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"The request body must be at most {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        if required:
            raise validation_error({"body": "a JSON object is required"})
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"The request body is not valid JSON: {exc}") from None
    if b"\\u0000" in raw:  # Postgres text cannot hold NUL; refuse it here rather than fail later
        raise validation_error({"body": "must not contain NUL characters (\\u0000)"})
    if not isinstance(body, dict):
        raise validation_error({"body": "must be a JSON object"})
    return body


def path_id(request: web.Request, name: str = "id") -> int:
    """A numeric id from the path; ids no row can have are simply not found."""
    raw = request.match_info[name]
    value = int(raw) if raw.isdigit() and len(raw) < 20 else 0
    if not 0 < value <= MAX_ID:
        raise not_found(name)
    return value


EARLIEST_MOMENT = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
LATEST_MOMENT = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


class Query:
    """Reads query parameters, collecting one error per bad parameter; `check()` raises them."""

    def __init__(self, request: web.Request, tz: zoneinfo.ZoneInfo) -> None:
        self._q = request.query
        self._tz = tz
        self.errors: dict[str, str] = {}

    @property
    def timezone(self) -> zoneinfo.ZoneInfo:
        """The zone dates are read in (the gateway's)."""
        return self._tz

    def text(self, name: str, *, max_length: int = 200, choices: tuple[str, ...] | None = None) -> str | None:
        value = self._q.get(name)
        if value is None or value == "":
            return None
        if len(value) > max_length or "\x00" in value:
            self.errors[name] = f"must be at most {max_length} characters"
            return None
        if choices is not None and value not in choices:
            self.errors[name] = f"must be one of {', '.join(choices)}"
            return None
        return value

    def integer(self, name: str, *, default: int | None = None, low: int = 1, high: int = MAX_ID) -> int | None:
        value = self._q.get(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            self.errors[name] = "must be a whole number"
            return default
        if not low <= number <= high:
            self.errors[name] = f"must be between {low} and {high}"
            return default
        return number

    def page(self) -> tuple[int, int]:
        page = self.integer("page", default=1, high=MAX_PAGE)
        limit = self.integer("limit", default=DEFAULT_LIMIT, high=MAX_LIMIT)
        assert page is not None and limit is not None
        return page, limit

    def moment(self, name: str, *, end: bool = False) -> dt.datetime | None:
        """An ISO date or date-time; a bare date is midnight in the gateway's time zone, and as an
        end bound (`end=True`) it includes that whole day."""
        value = self._q.get(name)
        if value is None or value == "":
            return None
        try:
            if len(value) == 10:
                day = dt.date.fromisoformat(value)
                if end:
                    day += dt.timedelta(days=1)
                return dt.datetime.combine(day, dt.time(), self._tz)
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except (ValueError, OverflowError):
            self.errors[name] = "must be an ISO 8601 date (YYYY-MM-DD) or date-time"
            return None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=self._tz)
        if not EARLIEST_MOMENT <= moment <= LATEST_MOMENT:
            # Years 1 and 9999 pass fromisoformat but overflow once moved to another zone (in
            # asyncpg's encoder or in day arithmetic): a 500 mid-export before this check.
            self.errors[name] = f"must be between {EARLIEST_MOMENT.year} and {LATEST_MOMENT.year - 1}"
            return None
        return moment

    def date_range(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        start, end = self.moment("startDate"), self.moment("endDate", end=True)
        if start is not None and end is not None and end < start:
            self.errors["endDate"] = "must not be before startDate"
        return start, end

    def check(self) -> None:
        if self.errors:
            raise validation_error(self.errors, "Invalid query parameters")
