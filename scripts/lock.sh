#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml: exact versions with hashes of every file PyPI has for
# them, for Python 3.11+ on any platform. Run it after changing a dependency, and commit the result.
#   requirements/runtime.lock  what the service needs (the Dockerfile installs it)
#   requirements/dev.lock      that plus the test tools (scripts/bootstrap.sh and CI install it)
# Pass --upgrade to move every pin to the newest version pyproject.toml allows.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
if [ ! -x .venv-tools/bin/uv ] || ! .venv-tools/bin/uv --version | grep -q "$UV_VERSION"; then
    python3 -m venv .venv-tools
    .venv-tools/bin/pip install --quiet "uv==$UV_VERSION"
fi
compile() {
    .venv-tools/bin/uv pip compile pyproject.toml "$@" --universal --generate-hashes --python-version 3.11 \
        --no-header --quiet
}
compile -o requirements/runtime.lock "${@}"
compile --extra test -o requirements/dev.lock "${@}"
echo "requirements/runtime.lock and requirements/dev.lock are up to date with pyproject.toml"
