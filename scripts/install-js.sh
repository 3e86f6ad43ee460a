#!/usr/bin/env bash
# The JavaScript clients LibreChat uses (LangChain, the agents runtime, the Anthropic SDK, the OIDC
# provider of the sign-in tests) in tests/js, at the versions of its package-lock.json; quick when
# they are already there. Without npm (or a registry) the tests that drive them are skipped and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v npm >/dev/null 2>&1 || exit 0
stamp=tests/js/node_modules/.installed-$(sha256sum tests/js/package-lock.json | cut -c1-16)
if [ ! -f "$stamp" ]; then
    if npm ci --prefix tests/js --no-audit --no-fund --loglevel=error; then
        touch "$stamp"
    else
        echo "npm ci failed: the JavaScript client tests will be skipped" >&2
    fi
fi
