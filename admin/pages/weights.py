"""Cost-weighted quotas: whether they are on, the reference model and each model's weight (its
price, the default from it, an override), saved through the API's shared `save_weights`."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from babel.numbers import format_decimal

from admin import i18n
from admin.api.weights import current_weights, save_weights
from admin.http import FAILED_WITH, Ctx
from admin.pages.common import Page, form_data, formatter, parse_number, redirect, render
from admin.wire.common import InputError

BACK = "/admin/quota-weights"
EXTRA_ROWS = 2  # blank rows to override a model the list does not show
# The panel's words for each field's refusal (the API's messages name the API's fields).
FIELD_ERRORS = {
    "enabled": "Pick a reference model to turn weights on.",
    "referenceModel": "Must be a model name of at most 256 characters.",
    "overrides": "Each weight must be a number from 0.0001 to 1000 and each model name at most 256 characters.",
}


def weight_text(fmt: i18n.Formatter, value: float | None) -> str:
    return "" if value is None else format_decimal(value, format="#,##0.####", locale=fmt.locale)


def _rows(fmt: i18n.Formatter, data: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            **line,
            "defaultText": weight_text(fmt, line["defaultWeight"]),
            "weightText": weight_text(fmt, line["weight"]),
            "overrideText": weight_text(fmt, line["override"]),
        }
        for line in data["models"]
    ]


def _page(
    request: web.Request, ctx: Ctx, *, form: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> web.Response:
    fmt = formatter(request)
    data = current_weights(ctx)
    rows = _rows(fmt, data)
    models = sorted({row["model"] for row in rows} | ({data["referenceModel"]} - {""}))
    return render(
        request,
        "admin/quota_weights.html",
        {
            "data": data,
            "rows": rows,
            "models": models,
            "extra_rows": range(EXTRA_ROWS),
            "form": form,
            "errors": errors or {},
        },
        active="settings",
        status=422 if errors else 200,
    )


async def weights_page(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return _page(request, ctx)


def form_to_patch(form: dict[str, str], fmt: i18n.Formatter) -> tuple[dict[str, Any], dict[str, str]]:
    """`enabled`, `referenceModel`, and per row `model-<i>` / `weight-<i>` (blank weight: the default)."""
    errors: dict[str, str] = {}
    overrides: dict[str, float] = {}
    index = 0
    while f"model-{index}" in form:
        model = form[f"model-{index}"].strip()
        weight = parse_number(form.get(f"weight-{index}", ""), "overrides", errors, fmt)
        if model and weight is not None:
            overrides[model] = weight
        index += 1
    body = {"enabled": form.get("enabled") == "on", "referenceModel": form.get("referenceModel", "").strip()}
    return {**body, "overrides": overrides}, errors


def _field_error(field: str, patch: dict[str, Any]) -> str:
    if field == "referenceModel" and not patch["referenceModel"]:  # blank while turning weights on
        return FIELD_ERRORS["enabled"]
    return FIELD_ERRORS.get(field, "Invalid value.")


async def save(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    form = await form_data(request)
    fmt = formatter(request)
    patch, errors = form_to_patch(form, fmt)
    if not errors:
        try:
            await save_weights(ctx, patch)
        except InputError as exc:
            request[FAILED_WITH] = exc
            errors = {k: fmt.gettext(_field_error(k, patch)) for k in exc.details}
        else:
            raise redirect(BACK, "success", fmt.gettext("Quota weights saved."))
    else:
        errors = {k: fmt.gettext(FIELD_ERRORS["overrides"]) for k in errors}
        request[FAILED_WITH] = InputError(errors)
    return _page(request, ctx, form=form, errors=errors)


PAGES = [
    Page("GET", "/quota-weights", weights_page, "settings:read"),
    Page("POST", "/quota-weights", save, "settings:write", "quota_weights.update", "system_settings"),
]
