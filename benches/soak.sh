#!/usr/bin/env bash
# The soak benchmark: oada-gateway under mixed valid and hostile traffic plus a slowloris for
# several minutes, reporting RSS, open file descriptors and p99 latency over time. Not run by CI.
#   bash benches/soak.sh                 # 5 minutes
#   bash benches/soak.sh --minutes 30
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 benches/soak/run.py "$@"
