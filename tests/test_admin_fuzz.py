"""Schema-driven fuzzing of the admin API (schemathesis) against its own /api/openapi.json.

Every operation of the document gets a bounded number of generated requests as an admin; no answer
may be a 5xx, and every answer must match the schema the document gives for its status. A test
below checks that no operation is left out.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from admin.routes import API_ROUTES
from tests.admin_client import AdminApi, api_fixture  # noqa: F401 - the fixture

# Per operation and per mode: schemathesis's positive (requests the schema allows) and negative
# (requests it forbids: wrong types, nulls, out-of-range numbers) generation. 25 of each over the 31
# operations takes about 30 s here on 2 shared cores (60 took 68 s, and found nothing more).
EXAMPLES_PER_OPERATION = 25
# These end the session they are sent with: each of their cases gets a session of its own, so the
# one the other operations use stays valid.
SESSION_ENDING = {("POST", "/auth/logout"), ("POST", "/auth/refresh")}
# Changing settings can point LiteLLM or SMTP at hosts that do not exist; fuzz it last.
LAST = ("PATCH", "/admin/settings")


def operations_of(document: dict[str, Any]) -> list[Any]:
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    operations.sort(key=lambda op: (op.method.upper(), op.path) == LAST)
    return operations


def fuzz_operation(operation: Any, mode: GenerationMode, base_url: str, token: Callable[[], str]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token()}"}, timeout=30)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    try:
        check()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # no parameters and no body (GET /health): there is no invalid request to make


def fuzz(document: dict[str, Any], base_url: str, token: str, new_token: Callable[[], str]) -> list[str]:
    failures: list[str] = []
    for operation, mode in itertools.product(operations_of(document), GenerationMode):
        ending = (operation.method.upper(), operation.path) in SESSION_ENDING
        try:
            fuzz_operation(operation, mode, base_url, new_token if ending else lambda: token)
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    return failures


async def test_fuzzed_requests_never_500_and_always_match_the_schema(api: AdminApi) -> None:
    user = await api.create_user(email="ana@example.com")
    await api.post(f"/admin/users/{user['id']}/keys", json={"name": "k"})
    await api.post("/admin/alerts/test", json={"userId": user["id"], "type": "usage_80"})
    document = (await api.get("/openapi.json", role=None)).body
    token = await api.new_token("admin")
    loop = asyncio.get_running_loop()

    def new_token() -> str:  # called from the fuzzer's thread
        return asyncio.run_coroutine_threadsafe(api.new_token("admin"), loop).result(timeout=30)

    failures = await asyncio.to_thread(fuzz, document, api.base, token, new_token)
    assert failures == [], "\n\n".join(failures)


async def test_the_fuzzer_covers_every_api_operation(api: AdminApi) -> None:
    document = (await api.get("/openapi.json", role=None)).body
    routed = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }
    fuzzed = {(op.method.upper(), op.path) for op in operations_of(document)}
    assert fuzzed == routed
    assert len(fuzzed) == len(API_ROUTES)  # every route of the one table, none left out (41 today)
