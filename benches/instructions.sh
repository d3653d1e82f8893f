#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: repeatable to a fraction of a
# percent whatever else the machine does, so that small changes on the hot path can be compared
# (wall-clock CPU per request moves by ±30% between runs on a shared machine).
#   bash benches/instructions.sh                          # this build
#   bash benches/instructions.sh --compare OTHER_BINARY   # and another build, side by side
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 benches/instructions/run.py "$@"
