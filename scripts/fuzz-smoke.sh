#!/usr/bin/env bash
# The libFuzzer smoke test: each cargo-fuzz target for a few seconds (default 3) over the seed
# corpus, with coverage guidance. cargo-fuzz is installed into the cache (~/.cache/stagegate)
# when absent; a cold instrumented build takes about ten minutes, so CI runs the same targets
# as an ordinary test instead (tests/suite/fuzz_smoke.rs). The campaign is bench/fuzz.sh.
# Usage: scripts/fuzz-smoke.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
exec fuzz/run.sh --seconds "${1:-3}"
