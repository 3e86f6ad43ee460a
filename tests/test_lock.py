"""The lock files (`requirements/*.lock`, from `scripts/lock.sh`) pin every dependency that
pyproject.toml declares, with hashes, so every install and image build is the same."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==\S+", re.MULTILINE)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(requirements: list[str]) -> set[str]:
    return {normalise(re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]) for requirement in requirements}


def pinned(lock: str) -> set[str]:
    return {normalise(name) for name in PINNED.findall((ROOT / "requirements" / lock).read_text())}


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("runtime.lock", PYPROJECT["project"]["dependencies"]),
        ("dev.lock", PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["test"]),
    ],
)
def test_every_declared_dependency_is_pinned_in_the_lock(lock: str, requirements: list[str]) -> None:
    missing = declared(requirements) - pinned(lock)
    assert not missing, f"{lock} lacks {sorted(missing)}: run scripts/lock.sh"


@pytest.mark.parametrize("lock", ["runtime.lock", "dev.lock"])
def test_every_pin_carries_hashes(lock: str) -> None:
    text = (ROOT / "requirements" / lock).read_text()
    blocks = [block for block in re.split(r"\n(?=\S)", text) if PINNED.match(block)]
    assert blocks and all("--hash=sha256:" in block for block in blocks)
