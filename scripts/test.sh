#!/usr/bin/env bash
# One command to run the whole test suite on real PostgreSQL and Redis (embedded, started by the
# tests themselves). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -x .venv-litellm/bin/litellm ] || [ "${SOLARIS_WITH_LITELLM:-0}" = 1 ]; then
    bash scripts/install-litellm.sh
fi
# The JavaScript clients LibreChat uses (LangChain), for tests/test_langchain_js.py; without npm
# (or a registry) those tests are skipped and say why.
if command -v npm >/dev/null 2>&1; then
    stamp=tests/js/node_modules/.installed-$(sha256sum tests/js/package-lock.json | cut -c1-16)
    if [ ! -f "$stamp" ]; then
        if npm ci --prefix tests/js --no-audit --no-fund --loglevel=error; then
            touch "$stamp"
        else
            echo "npm ci failed: the LangChain client tests will be skipped" >&2
        fi
    fi
fi
exec .venv/bin/pytest -p no:cacheprovider "$@"
