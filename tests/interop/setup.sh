#!/usr/bin/env bash
# Installs the third-party clients the interop tests run: Python authlib and selenium (in a venv
# under target/), Node openid-client, @oada/certs and oidc-provider (the external authorization server
# of the external-issuer tests; tests/interop/node/node_modules). The browser
# tests also need Debian's chromium and chromium-driver (.ci/run installs them). Idempotent and
# quick when already installed; run by .ci/run and, when needed, by the tests themselves.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${OADA_INTEROP_VENV:-$root/target/interop-venv}"

if ! "$venv/bin/python" -c 'import authlib, requests, selenium' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi

if [ ! -d "$here/node/node_modules/openid-client" ] || [ ! -d "$here/node/node_modules/@oada/certs" ] \
  || [ ! -d "$here/node/node_modules/oidc-provider" ]; then
  (cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "interop clients ready: $("$venv/bin/python" -c 'import authlib; print("authlib", authlib.__version__)'), node $(node --version)"
