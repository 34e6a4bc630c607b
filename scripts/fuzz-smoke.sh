#!/usr/bin/env bash
# CI's fuzzing smoke test: each cargo-fuzz target for a few seconds (default 3) over the seed
# corpus, so a target that no longer builds, or a seed that now crashes, fails CI. cargo-fuzz
# is installed into the cache (~/.cache/stagegate) when absent. The campaign is bench/fuzz.sh.
# Usage: scripts/fuzz-smoke.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
exec fuzz/run.sh --seconds "${1:-3}"
