"""The panel's pages, one module per page type; `ROUTES` is the one table of panel routes."""

from __future__ import annotations

from admin.auth import AUTHENTICATED, PUBLIC
from admin.pages import (
    admins,
    alert_channels,
    alerts,
    analytics,
    auth,
    chargeback,
    dashboard,
    departments,
    events,
    keys,
    logs,
    models,
    oidc,
    quota_requests,
    settings,
    users,
    weights,
)
from admin.pages.common import Page

USER = r"/users/{id:\d+}"
ADMIN = r"/admins/{id:\d+}"
DEPARTMENT = r"/departments/{id:\d+}"

ROUTES: list[Page] = [
    Page("GET", "/login", auth.login_form, PUBLIC),
    Page("POST", "/login", auth.login, PUBLIC),
    Page("GET", "/oidc/start", oidc.start, PUBLIC),
    Page("GET", "/oidc/callback", oidc.callback, PUBLIC),
    Page("POST", "/logout", auth.logout, AUTHENTICATED),
    Page("POST", "/language", auth.set_language, AUTHENTICATED),
    Page("GET", "/", dashboard.dashboard, "analytics:read"),
    Page("GET", "/dashboard.json", dashboard.dashboard_json, "analytics:read"),
    Page("GET", "/users", users.list_users, "users:read"),
    Page("GET", "/users/new", users.new_user, "users:write"),
    Page("POST", "/users", users.create_user, "users:write", "user.create", "user"),
    Page("GET", USER, users.show_user, "users:read"),
    Page("GET", USER + "/edit", users.edit_user, "users:write"),
    Page("POST", USER + "/edit", users.update_user, "users:write", "user.update", "user"),
    Page("POST", USER + "/tokens", users.add_tokens, "tokens:grant", "user.tokens.add", "user"),
    Page("POST", USER + "/reset-usage", users.reset_usage, "tokens:grant", "user.usage.reset", "user"),
    Page("POST", USER + "/status", users.set_status, "users:write", "user.update", "user"),
    Page("GET", USER + "/delete", users.confirm_delete, "users:write"),
    Page("POST", USER + "/delete", users.delete_user, "users:write", "user.delete", "user"),
    Page("POST", USER + "/keys", users.issue_key, "keys:write", "key.create", "api_key"),
    Page("POST", r"/keys/{key_id:\d+}/revoke", users.revoke_key, "keys:write", "key.revoke", "api_key"),
    Page("GET", "/keys", keys.list_keys, "keys:read"),
    Page("POST", "/keys", keys.issue_service_key, "keys:write"),
    Page("GET", "/admins", admins.list_admins, "admins:manage"),
    Page("GET", "/admins/new", admins.new_admin, "admins:manage"),
    Page("POST", "/admins", admins.create_admin, "admins:manage"),
    Page("GET", ADMIN, admins.show_admin, "admins:manage"),
    Page("POST", ADMIN + "/edit", admins.update_admin, "admins:manage"),
    Page("POST", ADMIN + "/password", admins.reset_password, "admins:manage"),
    Page("POST", ADMIN + "/status", admins.set_status, "admins:manage"),
    Page("GET", "/analytics", analytics.analytics_page, "usage:read"),
    Page("GET", "/chargeback", chargeback.chargeback_page, "analytics:read"),
    Page("GET", "/chargeback/export", chargeback.export, "usage:export", "chargeback.export", "token_usage"),
    Page("GET", "/alerts", alerts.list_alerts, "alerts:read"),
    Page("POST", r"/alerts/{id:\d+}/acknowledge", alerts.acknowledge, "alerts:write", "alert.acknowledge", "alert"),
    Page("GET", "/quota-requests", quota_requests.list_requests, "users:read"),
    Page("POST", r"/quota-requests/{id:\d+}/approve", quota_requests.approve, "tokens:grant"),
    Page("POST", r"/quota-requests/{id:\d+}/deny", quota_requests.deny, "tokens:grant"),
    Page("GET", r"/alerts/{id:\d+}", alert_channels.show_alert, "alerts:read"),
    Page("GET", "/departments", departments.list_departments, "users:read"),
    Page("GET", "/departments/new", departments.new_department, "users:write"),
    Page("POST", "/departments", departments.create_department, "users:write", "department.create", "department"),
    Page(
        "POST", "/departments/import", departments.import_assignments, "users:write", "department.import", "department"
    ),
    Page("GET", DEPARTMENT, departments.show_department, "users:read"),
    Page("GET", DEPARTMENT + "/edit", departments.edit_department, "users:write"),
    Page("POST", DEPARTMENT + "/edit", departments.update_department, "users:write", "department.update", "department"),
    Page(
        "POST", DEPARTMENT + "/delete", departments.delete_department, "users:write", "department.delete", "department"
    ),
    *alert_channels.PAGES,
    Page("GET", "/models", models.list_models, "models:read"),
    Page("POST", "/models/refresh", models.refresh, "models:write", "models.refresh", "model"),
    Page("GET", "/logs", logs.list_logs, "logs:read"),
    Page("GET", "/logs/export", logs.export, "logs:export"),
    Page("GET", "/settings", settings.settings_page, "settings:read"),
    Page("POST", "/settings", settings.save, "settings:write", "settings.update", "system_settings"),
    Page(
        "POST", "/settings/test-email", settings.test_email, "settings:write", "settings.test_email", "system_settings"
    ),
    *weights.PAGES,
    Page("GET", "/events", events.events, AUTHENTICATED),
    Page("GET", "/session", auth.session_check, AUTHENTICATED),
]

# Pages a signed-in admin reaches by GET, for the tests that every one refuses anonymous access.
GET_PAGES = [page.path for page in ROUTES if page.method == "GET" and page.permission != PUBLIC]
