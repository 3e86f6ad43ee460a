"""The seed's SystemSettings (camelCase, in sections, with `emailSettings.smtpPasswordSet`), and
its partial patch parsed into the core's changes (values by field path)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from admin.wire.common import InputError, camel
from metering.settings_rules import FIELDS, apply_changes
from metering.system_settings import SettingsValidationError, SystemSettings

SECTIONS = {"emailSettings": "email", "securitySettings": "security", "litellmSettings": "litellm"}
_SECTION_NAMES = {section: api for api, section in SECTIONS.items()}
PASSWORD_PATH = "emailSettings.smtpPassword"  # write-only
PASSWORD_SET_PATH = "emailSettings.smtpPasswordSet"  # read-only: accepted (and ignored) so a GET can be sent back


def _api_path(path: str) -> str:
    section, _, name = path.rpartition(".")
    return f"{_SECTION_NAMES[section]}.{camel(name)}" if section else camel(name)


# Sections with routes of their own, left out of the seed's SystemSettings.
OWN_ROUTES = frozenset({"quota_weights"})  # /api/admin/quota-weights (admin.api.weights)
API_PATHS = {path: _api_path(path) for path in FIELDS if path.split(".")[0] not in OWN_ROUTES}  # core -> seed
_FIELD_PATHS = {api: path for path, api in API_PATHS.items()}
_RENAMED = sorted((path for path, api in API_PATHS.items() if path != api), key=len, reverse=True)
_FIELD_NAME = re.compile(r"\b(" + "|".join(map(re.escape, _RENAMED)) + r")\b")


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def settings_to_api(settings: SystemSettings) -> dict[str, Any]:
    """The seed's SystemSettings in camelCase, plus `emailSettings.smtpPasswordSet`."""
    result: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name in OWN_ROUTES:
            continue
        if f.name in _SECTION_NAMES:
            result[_SECTION_NAMES[f.name]] = {
                camel(g.name): _json_value(getattr(value, g.name)) for g in dataclasses.fields(value)
            }
        else:
            result[camel(f.name)] = value
    return result


def api_setting_errors(details: Mapping[str, str]) -> dict[str, str]:
    """Errors from the core in the seed's paths: the keys, and the fields a message names."""
    return {
        API_PATHS.get(path, path): _FIELD_NAME.sub(lambda m: API_PATHS[m.group(1)], message)
        for path, message in details.items()
    }


@dataclass(frozen=True, slots=True)
class SettingsPatch:
    changes: dict[str, Any]  # values by the core's field path
    password: str | None  # a new SMTP password, "" for none, None to keep it
    named: list[str]  # the seed's paths the patch sets (for the audit log)


def settings_patch(current: SystemSettings, body: Mapping[str, Any]) -> SettingsPatch:
    """A partial patch (nested partials allowed) as the core's changes. Every problem, of shape or of
    value (checked against `current`), is raised at once as `InputError`."""
    errors: dict[str, str] = {}
    leaves: dict[str, Any] = {}
    for key, value in body.items():
        if key not in SECTIONS:
            leaves[str(key)] = value
        elif isinstance(value, Mapping):
            leaves.update({f"{key}.{name}": leaf for name, leaf in value.items()})
        else:
            errors[key] = "must be an object"
    changes: dict[str, Any] = {}
    password = None
    for path, value in leaves.items():
        if path == PASSWORD_PATH:
            if value is not None and not isinstance(value, str):
                errors[path] = "must be a string"
            password = value
        elif path == PASSWORD_SET_PATH:
            if not isinstance(value, bool):
                errors[path] = "is read-only"
        elif path in _FIELD_PATHS:
            changes[_FIELD_PATHS[path]] = value
        else:
            errors[path] = "unknown setting"
    try:
        apply_changes(current, changes, password=password if isinstance(password, str) else None)
    except SettingsValidationError as exc:
        errors.update(api_setting_errors(exc.details))
    if errors:
        raise InputError(errors)
    named = [API_PATHS[path] for path in changes] + ([PASSWORD_PATH] if password is not None else [])
    return SettingsPatch(changes, password, sorted(named))
