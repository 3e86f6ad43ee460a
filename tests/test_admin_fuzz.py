"""Schema-driven fuzzing of the admin API (schemathesis) against its own /api/openapi.json.

Every operation gets a bounded number of generated requests as an admin; no answer may be a 500,
and every answer must match the schema the document gives for its status.
"""

from __future__ import annotations

import asyncio
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture

EXAMPLES_PER_OPERATION = 15
# These end the session the fuzzer signs in with; their behaviour has tests of its own.
SKIPPED = {("POST", "/auth/logout"), ("POST", "/auth/refresh")}
# Changing settings can point LiteLLM or SMTP at hosts that do not exist; fuzz it last.
LAST = ("PATCH", "/admin/settings")


def fuzz(document: dict[str, Any], base_url: str, token: str) -> list[str]:
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    operations.sort(key=lambda op: (op.method.upper(), op.path) == LAST)
    failures: list[str] = []
    for operation in operations:
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    return failures


async def test_fuzzed_requests_never_500_and_always_match_the_schema(api: AdminApi) -> None:
    user = await api.create_user(email="ana@example.com")
    await api.post(f"/admin/users/{user['id']}/keys", json={"name": "k"})
    await api.post("/admin/alerts/test", json={"userId": user["id"], "type": "usage_80"})
    document = (await api.get("/openapi.json", role=None)).body
    token = await api.new_token("admin")
    failures = await asyncio.to_thread(fuzz, document, api.base, token)
    assert failures == [], "\n\n".join(failures)
