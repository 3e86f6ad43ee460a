#!/usr/bin/env bash
# Install the LiteLLM proxy in its own virtualenv (.venv-litellm at the repo root), so that its
# pinned dependencies never touch the gateway's .venv. Used by the end-to-end tests
# (tests/test_litellm_e2e.py, `pytest -m litellm`) and by the benchmark (bench/run.py).
#
# Idempotent: when the pinned version is already there it returns at once.
# Override the version with LITELLM_VERSION=..., the interpreter with PYTHON=...
set -euo pipefail

LITELLM_VERSION="${LITELLM_VERSION:-1.108.7}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-litellm"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
    done
fi

installed_version() {
    "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || true
}

if [ -x "$VENV/bin/litellm" ] && [ "$(installed_version)" = "$LITELLM_VERSION" ]; then
    echo "litellm $LITELLM_VERSION already installed in $VENV"
    exit 0
fi

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
echo "installed litellm $(installed_version) in $VENV in $(( $(date +%s) - start ))s"
