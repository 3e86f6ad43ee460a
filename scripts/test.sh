#!/usr/bin/env bash
# One command to run the whole test suite on real PostgreSQL and Redis (embedded, started by the
# tests themselves). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
if [ -x .venv-litellm/bin/litellm ] || [ "${SOLARIS_WITH_LITELLM:-0}" = 1 ]; then
    bash scripts/install-litellm.sh
fi
bash scripts/install-js.sh
exec .venv/bin/pytest -p no:cacheprovider "$@"
