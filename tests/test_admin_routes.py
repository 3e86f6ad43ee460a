"""The route table: every API route checks its permission, and the OpenAPI document lists them all.

The matrix is generated from `admin.routes.API_ROUTES` (the table the router is built from), so a
new route is covered the moment it exists.
"""

from __future__ import annotations

import re
from pathlib import Path

from admin import auth
from admin.route_table import Route
from admin.routes import API_ROUTES, openapi_document
from metering.audit import Actor
from runtime.appkeys import QUOTA_REQUESTS
from tests.admin_client import PASSWORD, AdminApi, api_fixture, smtp_fixture  # noqa: F401 - the fixtures
from tests.test_admin_settings import smtp_patch
from tests.test_mailer import Inbox

MISSING = {"id": "987654321", "name": "no-such-provider/no-such-model"}
ROLE_PERMISSIONS = {"admin": auth.ALL_PERMISSIONS, "operator": auth.OPERATOR, "viewer": auth.VIEWER}


def concrete_path(route: Route) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: MISSING[m.group(1)], route.path)


def allowed(role: str | None, route: Route) -> bool:
    if route.permission == auth.PUBLIC:
        return True
    if role is None:
        return False
    return route.permission == auth.AUTHENTICATED or route.permission in ROLE_PERMISSIONS[role]


async def test_permission_matrix_covers_every_route(api: AdminApi) -> None:
    problems = []
    for route in API_ROUTES:
        path = concrete_path(route)
        body: dict[str, object] | None = {} if route.body is not None else None
        for role in (None, "admin", "operator", "viewer"):
            token = await api.new_token(role) if role else None
            reply = await api.call(route.method, path, role=None, token=token, json=body)
            where = f"{route.method} {route.path} as {role or 'anonymous'}: {reply.status} {reply.body}"
            if not allowed(role, route):
                expected = 401 if role is None else 403
                if reply.status != expected or reply.body["code"] not in ("unauthorized", "forbidden"):
                    problems.append(f"expected {expected}; {where}")
            elif reply.status in (401, 403) or reply.status >= 500:
                problems.append(f"expected access; {where}")
            elif role == "admin" and route.path_params and reply.status != 404:
                problems.append(f"expected 404 for a missing id; {where}")
    assert problems == []


def test_every_route_needs_a_known_permission_and_mutations_name_their_audit_action() -> None:
    for route in API_ROUTES:
        assert route.permission in auth.PERMISSIONS or route.permission in (auth.PUBLIC, auth.AUTHENTICATED)
        if route.mutating:
            assert route.action, f"{route.method} {route.path} has no audit action"


def test_presets_are_what_their_names_say() -> None:
    assert auth.VIEWER == {p for p in auth.PERMISSIONS if p.endswith(":read")}
    assert {"users:write", "tokens:grant", "alerts:write"} <= auth.OPERATOR
    assert not auth.OPERATOR & {"settings:write", "keys:write", "logs:export", "usage:export", "models:write"}


def test_openapi_document_describes_every_route_with_its_permission() -> None:
    document = openapi_document()
    operations = {(method.upper(), path): op for path, item in document["paths"].items() for method, op in item.items()}
    assert len(operations) == len(API_ROUTES)
    for route in API_ROUTES:
        op = operations[(route.method, route.openapi_path)]
        assert op["x-permission"] == route.permission
        assert op["summary"]
        assert str(route.status) in op["responses"]
    ids = [op["operationId"] for op in operations.values()]
    assert len(ids) == len(set(ids))


async def test_openapi_json_is_served_without_auth(api: AdminApi) -> None:
    reply = await api.get("/openapi.json", role=None)
    assert reply.status == 200
    assert reply.body["openapi"].startswith("3.")
    assert "/admin/users/{id}" in reply.body["paths"]


async def test_a_refused_mutation_is_audited(api: AdminApi) -> None:
    reply = await api.patch("/admin/settings", role="viewer", json={"defaultMonthlyLimit": 5})
    assert reply.status == 403
    [entry] = await api.audit_entries("settings.update")
    assert entry["success"] is False
    assert entry["actor_email"] == "viewer@solaris.test"
    assert "forbidden" in entry["error_message"]


async def test_a_failed_mutation_is_audited_with_its_error(api: AdminApi) -> None:
    reply = await api.patch("/admin/users/4242", json={"name": "x"}, headers={"X-Request-ID": "req_fail"})
    assert reply.status == 404
    [entry] = await api.audit_entries("user.update")
    assert entry["success"] is False
    assert entry["resource_id"] == "4242"
    assert entry["request_id"] == "req_fail"
    assert entry["error_message"].startswith("404")


async def test_every_mutation_writes_an_audit_entry_with_its_request_id(api: AdminApi, smtp: tuple[Inbox, int]) -> None:
    """One successful call of each route that changes something (or exports), generated from the
    table: a new mutating route must be added to `calls` below, with the audit action it writes."""
    _, port = smtp
    await api.patch("/admin/settings", json=smtp_patch(port))
    user = await api.create_user(email="ana@example.com")
    doomed = await api.create_user(email="gone@example.com")
    alert = (await api.post("/admin/alerts/test", json={"userId": user["id"], "type": "usage_80"})).data
    key = (await api.post("/admin/keys", json={"name": "old"})).data
    v = await api.account("viewer")
    asks = api.gateway.app[QUOTA_REQUESTS]
    bea = await api.create_user(email="bea@example.com")
    approved = await asks.create(user["id"], 10, "more", "api", Actor(None, "end-user:ana@example.com"))
    denied = await asks.create(bea["id"], 10, "more", "api", Actor(None, "end-user:bea@example.com"))
    hook = {"name": "ops", "kind": "webhook", "url": "http://127.0.0.1:9/hook", "alertTypes": ["blocked"]}
    c, c2 = [(await api.post("/admin/alert-channels", json=hook)).data["id"] for _ in range(2)]
    u, d, a = user["id"], doomed["id"], alert["id"]
    dep, dep2 = [(await api.post("/admin/departments", json={"name": n, "monthlyLimit": 9})).data["id"] for n in "AB"]
    calls: dict[tuple[str, str], tuple[str, str, object]] = {
        ("POST", "/auth/login"): ("auth.login", "/auth/login", {"email": "viewer@solaris.test", "password": PASSWORD}),
        ("POST", "/auth/logout"): ("auth.logout", "/auth/logout", None),
        ("POST", "/auth/refresh"): ("auth.refresh", "/auth/refresh", None),
        ("POST", "/admin/users"): ("user.create", "/admin/users", {"email": "new@example.com"}),
        ("PATCH", r"/admin/users/{id:\d+}"): ("user.update", f"/admin/users/{u}", {"name": "Ana B"}),
        ("DELETE", r"/admin/users/{id:\d+}"): ("user.delete", f"/admin/users/{d}", None),
        ("POST", r"/admin/users/{id:\d+}/tokens"): ("user.tokens.add", f"/admin/users/{u}/tokens", {"amount": 5}),
        ("POST", r"/admin/users/{id:\d+}/reset-usage"): ("user.usage.reset", f"/admin/users/{u}/reset-usage", None),
        ("POST", "/admin/keys"): ("key.create", "/admin/keys", {"name": "lc"}),
        ("DELETE", r"/admin/keys/{id:\d+}"): ("key.revoke", f"/admin/keys/{key['id']}", None),
        ("POST", r"/admin/users/{id:\d+}/keys"): ("key.create", f"/admin/users/{u}/keys", {}),
        ("PATCH", "/admin/settings"): ("settings.update", "/admin/settings", {"defaultMonthlyLimit": 1000}),
        ("POST", "/admin/settings/test-email"): ("settings.test_email", "/admin/settings/test-email",
                                                 {"email": "ops@example.com"}),
        ("PATCH", "/admin/quota-weights"): ("quota_weights.update", "/admin/quota-weights", {"overrides": {"m": 2}}),
        ("POST", r"/admin/alerts/{id:\d+}/acknowledge"): ("alert.acknowledge", f"/admin/alerts/{a}/acknowledge", None),
        ("POST", "/admin/alerts/test"): ("alert.test", "/admin/alerts/test", {"userId": u, "type": "usage_95"}),
        ("POST", "/admin/models/refresh"): ("models.refresh", "/admin/models/refresh", None),
        ("GET", "/admin/logs/export"): ("logs.export", "/admin/logs/export", None),
        ("GET", "/admin/usage/export"): ("usage.export", "/admin/usage/export", None),
        ("GET", "/admin/reports/chargeback/export"): ("chargeback.export", "/admin/reports/chargeback/export", None),
        ("POST", r"/admin/quota-requests/{id:\d+}/approve"): ("quota_request.approve",
                                                              f"/admin/quota-requests/{approved.id}/approve", {}),
        ("POST", r"/admin/quota-requests/{id:\d+}/deny"): ("quota_request.deny",
                                                           f"/admin/quota-requests/{denied.id}/deny", None),
        ("POST", "/admin/admins"): ("admin.create", "/admin/admins",
                                    {"email": "op@example.com", "name": "Op", "role": "operator", "password": PASSWORD}),
        ("PATCH", r"/admin/admins/{id:\d+}"): ("admin.update", f"/admin/admins/{v}", {"name": "Vi"}),
        ("POST", r"/admin/admins/{id:\d+}/disable"): ("admin.disable", f"/admin/admins/{v}/disable", None),
        ("POST", r"/admin/admins/{id:\d+}/enable"): ("admin.enable", f"/admin/admins/{v}/enable", None),
        ("POST", r"/admin/admins/{id:\d+}/password"): ("admin.password_reset", f"/admin/admins/{v}/password",
                                                      {"password": "a new long password"}),
        ("POST", "/admin/alert-channels"): ("alert_channel.create", "/admin/alert-channels", hook),
        ("PATCH", r"/admin/alert-channels/{id:\d+}"): ("alert_channel.update", f"/admin/alert-channels/{c}",
                                                       {"enabled": False}),
        ("POST", r"/admin/alert-channels/{id:\d+}/rotate-secret"): ("alert_channel.rotate_secret",
                                                                    f"/admin/alert-channels/{c}/rotate-secret", None),
        ("POST", r"/admin/alert-channels/{id:\d+}/test"): ("alert_channel.test", f"/admin/alert-channels/{c}/test",
                                                           None),
        ("DELETE", r"/admin/alert-channels/{id:\d+}"): ("alert_channel.delete", f"/admin/alert-channels/{c2}", None),
        ("POST", "/admin/departments"): ("department.create", "/admin/departments", {"name": "C", "monthlyLimit": 1}),
        ("PATCH", r"/admin/departments/{id:\d+}"): ("department.update", f"/admin/departments/{dep}",
                                                     {"monthlyLimit": 10}),
        ("DELETE", r"/admin/departments/{id:\d+}"): ("department.delete", f"/admin/departments/{dep2}", None),
        ("POST", "/admin/departments/import"): ("department.import", "/admin/departments/import",
                                                {"csv": "email,department\nana@example.com,A\n"}),
    }  # fmt: skip
    audited_routes = {(r.method, r.path) for r in API_ROUTES if r.mutating or r.action}
    assert audited_routes == set(calls)
    for number, (method, path) in enumerate(calls):
        action, concrete, body = calls[(method, path)]
        request_id = f"req_audit_{number}"
        token = await api.new_token("admin")
        reply = await api.call(method, concrete, token=token, json=body, headers={"X-Request-ID": request_id})
        assert reply.status < 300, (method, path, reply.status, reply.body)
        entries = [e for e in await api.audit_entries(action) if e["request_id"] == request_id]
        assert [e["success"] for e in entries] == [True], (method, path)
        assert entries[0]["ip_address"] == "127.0.0.1"


def test_every_route_is_in_the_admin_api_document(project_root: Path) -> None:
    text = (project_root / "docs" / "admin-api.md").read_text(encoding="utf-8")
    for route in API_ROUTES:
        assert f"| {route.method} | `/api{route.openapi_path}` | {route.permission} |" in text, route.path
