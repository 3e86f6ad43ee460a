"""`admin/wire`: the seed's shapes built from the core's domain objects, and its bodies parsed into
the core's input, with every name the seed's."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from admin.wire.common import InputError
from admin.wire.users import api_field_errors, user_changes, user_to_api, user_update_event
from metering.quota import UserQuota
from metering.user_model import UNSET, User, UserChange, UserChanges
from tests.test_admin_users import SEED_USER_FIELDS

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
QUOTA = UserQuota("active", 1000, used=400, reserved=20, extra_tokens=250, alert80=False, alert95=False, blocked=False)
USER = User(
    id=7, email="ana@example.com", name="Ana", phone=None, status="active", plan="pro", monthly_limit=1000,
    librechat_id=None, language="en", notes=None, custom_alert_threshold80=70.0, custom_alert_threshold95=None,
    email_notifications_enabled=True, last_alert_date=None, last_login=None, login_count=0, created_at=NOW,
    updated_at=NOW, period="2026-11", quota=QUOTA,
)  # fmt: skip


def test_a_user_has_the_seeds_fields_with_this_periods_counters() -> None:
    user = user_to_api(USER)
    assert SEED_USER_FIELDS <= set(user)
    assert (user["monthlyLimit"], user["additionalTokens"], user["currentUsage"]) == (1000, 250, 400)
    assert user["reservedTokens"] == 20 and user["createdAt"] == "2026-11-30T12:00:00Z"
    assert USER.total_limit == 1250


def test_an_active_user_whose_quota_is_spent_shows_as_blocked() -> None:
    spent = dataclasses.replace(USER, quota=dataclasses.replace(QUOTA, blocked=True))
    assert user_to_api(spent)["status"] == "blocked"
    assert spent.status == "active"


def test_a_body_becomes_changes_in_the_cores_names() -> None:
    changes = user_changes({"monthlyLimit": 5000, "additionalTokens": 10, "phone": None})
    assert changes == UserChanges(monthly_limit=5000, extra_tokens=10, phone=None)
    assert changes.email is UNSET
    assert changes.given() == {"phone": None, "monthly_limit": 5000, "extra_tokens": 10}


def test_unknown_fields_are_refused_by_the_seeds_names() -> None:
    with pytest.raises(InputError) as caught:
        user_changes({"monthlyLimit": 5000, "monthly_limit": 1, "colour": "red"})
    assert caught.value.details == {
        "monthly_limit": "is not a field that can be set",
        "colour": "is not a field that can be set",
    }


def test_field_errors_name_the_seeds_fields_also_inside_messages() -> None:
    details = {
        "custom_alert_threshold95": "must be greater than custom_alert_threshold80",
        "monthly_limit": "must be between 0 and 1000",
        "amount": "is too large",
    }
    assert api_field_errors(details) == {
        "customAlertThreshold95": "must be greater than customAlertThreshold80",
        "monthlyLimit": "must be between 0 and 1000",
        "amount": "is too large",
    }


def test_user_update_events_keep_their_shapes() -> None:
    assert user_update_event(UserChange("created", 7)) == {"action": "created", "userId": 7}
    assert user_update_event(UserChange("deleted", 7)) == {"action": "deleted", "userId": 7}
    updated = user_update_event(UserChange("updated", 7, USER))
    assert set(updated) == {"action", "user"} and updated["user"]["id"] == 7
    granted = user_update_event(UserChange("tokens_added", 7, USER, amount=250, grant_id=3))
    assert (granted["amount"], granted["grantId"], granted["user"]["additionalTokens"]) == (250, 3, 250)
