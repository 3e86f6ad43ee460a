"""Department alerts: a department's thresholds (its own, or 80 / 95, and the block) alert its
contacts by e-mail, once per department and period, and show in the alerts list.

A department's counters fire their thresholds in settle.lua exactly as a user's do (flags in its
``sol:duse`` hash), so each fires once however many processes settle its members' requests; the row
carries ``dedupe_key = "department:<id>:<period>:<type>"`` (a unique index) as a second guard. The
row has no user: ``metadata`` names the department and its contacts, and the alert dispatcher
(`metering.alerts`) mails each contact the e-mail `department_email` renders, with its retries.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import asyncpg

from metering.alert_texts import THRESHOLD_TYPES, period_reset_date, usage_percent
from metering.background import TaskSet
from metering.department_quota import DepartmentQuota
from metering.mailer import format_number, pick_language, render_email

log = logging.getLogger(__name__)

SEVERITY = {"usage_80": "info", "usage_95": "warning", "blocked": "critical"}
EXISTING_KEYS = "SELECT dedupe_key FROM alerts WHERE dedupe_key = ANY($1::text[])"
SELECT_DEPARTMENT = "SELECT name, contacts, alert_thresholds FROM departments WHERE id = $1"
INSERT_DEPARTMENT_ALERT = """
INSERT INTO alerts (user_id, type, title, message, severity, status, period, dedupe_key, metadata, next_attempt_at)
VALUES (NULL, $1, $2, $3, $4, 'pending', $5, $6, $7, now())
ON CONFLICT DO NOTHING
RETURNING *
"""

TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "pt-BR": {
        "usage_80": (
            "Departamento {name}: {percent}% do limite mensal de tokens usado",
            "O departamento {name} já usou {used} de {limit} tokens ({percent}%) do limite mensal que seus membros"
            " compartilham.",
        ),
        "usage_95": (
            "Atenção: departamento {name} com {percent}% do limite mensal de tokens usado",
            "O departamento {name} já usou {used} de {limit} tokens ({percent}%). Ao atingir o limite, as"
            " solicitações de seus membros serão recusadas.",
        ),
        "blocked": (
            "Departamento {name}: limite mensal de tokens atingido",
            "O departamento {name} usou {used} de {limit} tokens neste mês. As solicitações de seus membros são"
            " recusadas até a renovação do limite.",
        ),
    },
    "en": {
        "usage_80": (
            "Department {name}: {percent}% of the monthly token limit used",
            "Department {name} has used {used} of {limit} tokens ({percent}%) of the monthly limit its members share.",
        ),
        "usage_95": (
            "Warning: department {name} has used {percent}% of its monthly token limit",
            "Department {name} has used {used} of {limit} tokens ({percent}%). Once the limit is reached, its"
            " members' requests will be refused.",
        ),
        "blocked": (
            "Department {name}: monthly token limit reached",
            "Department {name} has used {used} of {limit} tokens this month. Its members' requests are refused"
            " until the limit resets.",
        ),
    },
}


def department_texts(alert_type: str, lang: str, name: str, used: int, limit: int) -> tuple[str, str]:
    lang = pick_language(lang)
    values = {
        "name": name, "used": format_number(used, lang), "limit": format_number(limit, lang),
        "percent": format_number(usage_percent(used, limit), lang),
    }  # fmt: skip
    title, message = (text.format(**values) for text in TEXTS[lang][alert_type])
    return title, message


def department_email(
    alert_type: str, lang: str, metadata: Mapping[str, Any], period: str | None
) -> tuple[str, str, str]:
    """(subject, text, html) of the e-mail to a department's contacts."""
    reset = period_reset_date(period)
    return render_email(
        "department_threshold", lang, alert_type=alert_type, department=metadata.get("department", ""),
        percent=metadata.get("percent", 0), used=metadata.get("used", 0), total_limit=metadata.get("limit", 0),
        reset_date=reset,
    )  # fmt: skip


def highest(crossed: Iterable[str]) -> str | None:
    """As for a user: thresholds crossed together raise one alert, the highest."""
    given = set(crossed)
    ranked = [t for t in THRESHOLD_TYPES if t in given]
    return ranked[-1] if ranked else None


class DepartmentAlerts:
    """Raises department alerts off the request path; `announce` hears of each row inserted (the
    live feed and the dispatcher's wake-up)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        language: str,
        announce: Callable[[Mapping[str, Any]], Awaitable[None]],
        tasks: TaskSet,
    ) -> None:
        self._pool = pool
        self._language = pick_language(language)
        self._announce = announce
        self._tasks = tasks

    def raise_crossed_later(
        self, department_id: int, crossed: Iterable[str], period: str, used: int, total_limit: int
    ) -> str | None:
        alert_type = highest(crossed)
        if alert_type is not None:
            self._tasks.spawn(
                self.raise_threshold(department_id, alert_type, period, used, total_limit),
                name=f"department-alert-{alert_type}-{department_id}",
            )
        return alert_type

    async def recover_missed(self, quota: DepartmentQuota, period: str) -> int:
        """Raise the department alerts whose flag is set in Redis but whose row is missing (the
        process that settled died before writing it); as `AlertService.recover_missed` for users."""
        missing = []
        for department_id, state in (await quota.fired(period)).items():
            flags = {"usage_80": state.alert80, "usage_95": state.alert95, "blocked": state.blocked}
            alert_type = highest(t for t, flag in flags.items() if flag)
            if alert_type is not None:
                missing.append((department_id, alert_type, state.used, state.monthly_limit))
        keys = [f"department:{d}:{period}:{t}" for d, t, _, _ in missing]
        existing = {r["dedupe_key"] for r in await self._pool.fetch(EXISTING_KEYS, keys)} if keys else set()
        raised = 0
        for (department_id, alert_type, used, limit), key in zip(missing, keys, strict=True):
            if key not in existing and await self.raise_threshold(department_id, alert_type, period, used, limit):
                log.warning("raised missed %s alert for department %s (%s)", alert_type, department_id, period)
                raised += 1
        return raised

    async def raise_threshold(
        self, department_id: int, alert_type: str, period: str, used: int, total_limit: int
    ) -> int | None:
        """The alert once per department, period and type; its id, or None if already raised."""
        department = await self._pool.fetchrow(SELECT_DEPARTMENT, department_id)
        if department is None:
            return None
        title, message = department_texts(alert_type, self._language, department["name"], used, total_limit)
        metadata = {
            "departmentId": department_id, "department": department["name"], "contacts": list(department["contacts"]),
            "used": used, "limit": total_limit, "percent": usage_percent(used, total_limit),
        }  # fmt: skip
        key = f"department:{department_id}:{period}:{alert_type}"
        row = await self._pool.fetchrow(
            INSERT_DEPARTMENT_ALERT, alert_type, title, message, SEVERITY[alert_type], period, key, metadata
        )
        if row is None:
            return None
        await self._announce(row)
        return int(row["id"])
