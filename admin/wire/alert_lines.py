"""What an admin reads about an alert: who it is about, a line in the panel's language, and where
its e-mail stands.

The alert's stored `title` and `message` are the end user's words (in the end user's language, as
they were e-mailed); the admin reads `summary` instead (issue 14 #6), built here from the alert's
type and figures, and `delivery` instead of a `status` that stays 'pending' for an e-mail that will
never be sent.
"""

from __future__ import annotations

from typing import Any

from admin.i18n import Formatter
from metering.alerts import Alert

USAGE_TYPES = ("usage_80", "usage_95", "blocked")


def person(name: str | None, email: str | None, user_id: int | None) -> str:
    """'Maria (maria@x.com)', the e-mail alone without a name, '#id' for a user no longer known."""
    if email:
        return f"{name} ({email})" if name else email
    return f"#{user_id}" if user_id is not None else "—"


def delivery(alert: Alert) -> dict[str, Any]:
    """Where the alert's e-mail stands: state sent | queued | retrying | failed | not_sent, and why.

    not_sent reasons: smtp_not_configured, notifications_disabled, no_recipient (system alerts are
    never e-mailed). failed / retrying carry the SMTP error and the attempts made."""
    reason = alert.metadata.get("delivery")
    if alert.sent_at is not None:
        return {"state": "sent", "reason": None, "attempts": alert.attempts}
    if reason:
        return {"state": "not_sent", "reason": str(reason), "attempts": alert.attempts}
    if alert.user_id is None or alert.type not in USAGE_TYPES:
        return {"state": "not_sent", "reason": "no_recipient", "attempts": alert.attempts}
    if alert.attempts > 0:
        state = "retrying" if alert.next_attempt_at is not None else "failed"
        return {"state": state, "reason": alert.metadata.get("deliveryError"), "attempts": alert.attempts}
    return {"state": "queued", "reason": None, "attempts": 0}


def _percent(fmt: Formatter, value: Any) -> str:
    number = float(value or 0)
    return fmt.number(number, 0 if number.is_integer() else 1)


def summary(alert: Alert, fmt: Formatter) -> str:
    """One line for the admin, in the panel's language, naming the user."""
    who = person(alert.user_name, alert.user_email, alert.user_id)
    meta = alert.metadata
    figures = {"who": who, "used": fmt.number(meta.get("used", 0)), "limit": fmt.number(meta.get("limit", 0))}
    if alert.type in USAGE_TYPES and alert.is_test:
        return fmt.gettext(
            "Test of the usage notice e-mail for {who} (not real: their usage is {used} of {limit} tokens).", **figures
        )
    if alert.type == "blocked":
        return fmt.gettext("{who} reached their monthly quota and is blocked: {used} of {limit} tokens.", **figures)
    if alert.type in USAGE_TYPES:
        return fmt.gettext(
            "{who} passed {percent}% of their monthly quota: {used} of {limit} tokens.",
            percent=_percent(fmt, meta.get("percent")),
            **figures,
        )
    if alert.is_test:
        return fmt.gettext("Test alert ({type}) raised by an administrator.", type=alert.type)
    if alert.user_id is not None:  # another alert about a user (say, a forecast): who, and its title
        return f"{who}: {alert.title}"
    return f"{alert.title}: {alert.message}" if alert.message else alert.title


def delivery_text(state: dict[str, Any], fmt: Formatter) -> str:
    """The delivery state as the panel shows it."""
    reason = state.get("reason")
    words = {
        "sent": fmt.gettext("E-mail sent"),
        "queued": fmt.gettext("E-mail queued"),
        "retrying": fmt.gettext("E-mail failed, will retry: {reason}", reason=reason or "—"),
        "failed": fmt.gettext("E-mail failed: {reason}", reason=reason or "—"),
    }
    reasons = {
        "smtp_not_configured": fmt.gettext("Not e-mailed: SMTP is not configured"),
        "notifications_disabled": fmt.gettext("Not e-mailed: this user turned e-mail notices off"),
        "no_recipient": fmt.gettext("Not e-mailed: no recipient"),
    }
    if state["state"] == "not_sent":
        return reasons.get(str(reason), fmt.gettext("Not e-mailed"))
    return words[state["state"]]
