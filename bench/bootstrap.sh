#!/usr/bin/env bash
# The `vs_champion` bootstrap on a large holdout (examples/bootstrap.rs): the per-row path the
# dataset gate takes against the general one, in one process. Prints one JSON line.
# Usage: bench/bootstrap.sh [ROWS] [RESAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example bootstrap
"$(scripts/target-dir.sh)/release/examples/bootstrap" "${1:-1000000}" "${2:-1000}"
