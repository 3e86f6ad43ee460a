"""The layers as written in DESIGN.md, checked on the source: what `lint-imports` cannot see.

`lint-imports` (run in CI, contracts in pyproject.toml) checks which package imports which and
that no modules import each other in a circle. These tests add what it cannot express: the core
(`metering/`) knows nothing of HTTP servers, no first-party import hides inside a function (where
it would hide a circle from the linter's view of start-up order), and modules stay small.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("solaris", "runtime", "admin", "proxy", "metering")
FIRST_PARTY = frozenset(PACKAGES)
MAX_MODULE_LINES = 400


def modules(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def imports(tree: ast.AST) -> list[tuple[ast.stmt, str]]:
    found: list[tuple[ast.stmt, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.extend((node, f"{node.module}.{alias.name}") for alias in node.names)
    return found


@pytest.mark.parametrize("path", modules("metering"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_core_does_not_import_an_http_server(path: Path) -> None:
    server_side = [
        name
        for _, name in imports(ast.parse(path.read_text()))
        if name == "aiohttp.web" or name.startswith(("aiohttp.web.", "aiohttp.web_", "aiohttp_jinja2"))
    ]
    assert server_side == [], f"{path.name} imports {server_side}: metering/ must not know of HTTP servers"


@pytest.mark.parametrize("path", modules(*PACKAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_first_party_import_hides_inside_a_function(path: Path) -> None:
    tree = ast.parse(path.read_text())
    hidden = [
        f"line {node.lineno}: {name}"
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node, name in imports(function)
        if name.split(".")[0] in FIRST_PARTY
    ]
    assert hidden == [], f"{path.name} imports inside a function: {hidden}"


@pytest.mark.parametrize("path", modules(*PACKAGES), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{path.name} has {lines} lines: split it by what its parts do"
