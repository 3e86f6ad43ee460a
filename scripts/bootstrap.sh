#!/usr/bin/env bash
# Create .venv with the project and its test tools, at the exact versions (and hashes) of
# requirements/dev.lock; quick when it already matches the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/pip install --quiet --upgrade pip
fi
stamp=.venv/.installed-$(cat requirements/dev.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    .venv/bin/pip install --quiet --require-hashes -r requirements/dev.lock
    .venv/bin/pip install --quiet --no-deps -e .
    touch "$stamp"
fi
