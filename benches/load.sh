#!/usr/bin/env bash
# The load benchmark in one command: oada-gateway next to nginx and HAProxy on loopback.
# Installs nginx, haproxy and wrk from Debian's packages when missing (needs root for apt).
#   bash benches/load.sh            # 3 alternating rounds of 10 s, RSS with 1,000,000 tokens (~10 min)
#   bash benches/load.sh --quick    # 1 round of 5 s, RSS with 100,000 tokens (~3 min)
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 benches/load/run.py "$@"
