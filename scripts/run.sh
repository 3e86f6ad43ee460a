#!/usr/bin/env bash
# One command to run the gateway on a fresh clone: installs what it needs, then serves.
# With no DATABASE_URL / REDIS_URL it starts embedded PostgreSQL and Redis under ./var.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/solaris-proxy "${@:-serve}"
