"""`/api/admin/settings`: validated changes applied at once, a write-only SMTP password, test e-mail."""

from __future__ import annotations

import orjson

from tests.admin_client import AdminApi, api_fixture, smtp_fixture  # noqa: F401 - the fixtures
from tests.test_mailer import Inbox, free_port


def smtp_patch(port: int, **email: object) -> dict[str, object]:
    return {
        "emailSettings": {
            "smtpHost": "127.0.0.1",
            "smtpPort": port,
            "useTls": False,
            "fromEmail": "noreply@solaris.test",
            **email,
        }
    }


async def test_get_returns_the_seed_settings_without_any_password(api: AdminApi) -> None:
    reply = await api.get("/admin/settings", role="viewer")
    assert reply.status == 200
    settings = reply.data
    assert {"defaultMonthlyLimit", "alertThreshold80", "alertThreshold95", "blockThreshold", "maxUserLimit",
            "minUserLimit", "emailSettings", "securitySettings", "litellmSettings"} <= set(settings)  # fmt: skip
    assert settings["emailSettings"]["smtpPasswordSet"] is False
    assert "smtpPassword" not in settings["emailSettings"]
    assert settings["securitySettings"]["corsOrigins"] == []


async def test_patch_applies_at_once_is_audited_and_announced(api: AdminApi) -> None:
    reply = await api.patch("/admin/settings", json={"defaultMonthlyLimit": 250_000, "alertThreshold80": 75})
    assert reply.status == 200, reply.body
    assert reply.data["defaultMonthlyLimit"] == 250_000
    assert api.gateway.system.current.default_monthly_limit == 250_000
    assert api.gateway.policy().default_monthly_limit == 250_000
    [entry] = await api.audit_entries("settings.update")
    assert entry["details"]["before"]["alertThreshold80"] == 80
    assert entry["details"]["after"]["alertThreshold80"] == 75
    assert entry["details"]["changed"] == ["alertThreshold80", "defaultMonthlyLimit"]
    created = await api.create_user(email="new@example.com")
    assert created["monthlyLimit"] == 250_000


async def test_invalid_patch_is_422_per_field_and_changes_nothing(api: AdminApi) -> None:
    reply = await api.patch(
        "/admin/settings",
        json={"minUserLimit": -1, "emailSettings": {"smtpPort": 0}, "securitySettings": {"corsOrigins": ["*"]}},
    )
    assert reply.status == 422
    assert set(reply.body["details"]) == {
        "minUserLimit", "emailSettings.smtpPort", "securitySettings.corsOrigins",
    }  # fmt: skip
    unordered = await api.patch("/admin/settings", json={"alertThreshold80": 97})
    assert unordered.status == 422
    assert set(unordered.body["details"]) == {"alertThreshold80"}
    assert (await api.get("/admin/settings")).data["alertThreshold80"] == 80


async def test_smtp_password_is_write_only(api: AdminApi) -> None:
    reply = await api.patch("/admin/settings", json={"emailSettings": {"smtpPassword": "s3cret-value"}})
    assert reply.status == 200
    assert reply.data["emailSettings"]["smtpPasswordSet"] is True
    assert b"s3cret-value" not in reply.raw
    assert b"s3cret-value" not in (await api.get("/admin/settings")).raw
    [entry] = await api.audit_entries("settings.update")
    assert b"s3cret-value" not in orjson.dumps(entry, default=str)
    assert entry["details"]["smtpPassword"] == "changed"
    assert await api.gateway.system.smtp_password() == "s3cret-value"


async def test_test_email_arrives_at_a_real_smtp_server(api: AdminApi, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    await api.patch("/admin/settings", json=smtp_patch(port))
    reply = await api.post("/admin/settings/test-email", json={"email": "ops@example.com"})
    assert reply.status == 200, reply.body
    [message] = inbox.messages
    assert message["To"] == "ops@example.com"
    assert message["Subject"] == "E-mail de teste do IA SOLARIS"
    [entry] = await api.audit_entries("settings.test_email")
    assert entry["success"] is True


async def test_test_email_failure_is_502_and_audited(api: AdminApi) -> None:
    await api.patch("/admin/settings", json=smtp_patch(free_port()))  # nothing listens there
    reply = await api.post("/admin/settings/test-email", json={"email": "ops@example.com"})
    assert reply.status == 502
    assert reply.body["code"] == "smtp_error"
    [entry] = await api.audit_entries("settings.test_email")
    assert entry["success"] is False
    assert "cannot connect" in entry["error_message"]


async def test_test_email_needs_an_address_and_a_configured_server(api: AdminApi) -> None:
    invalid = await api.post("/admin/settings/test-email", json={"email": "nope"})
    assert invalid.status == 422
    assert set(invalid.body["details"]) == {"email"}
    unconfigured = await api.post("/admin/settings/test-email", json={"email": "ops@example.com"})
    assert unconfigured.status == 400
    assert unconfigured.body["code"] == "smtp_not_configured"
