#!/usr/bin/env bash
# The `vs_champion` bootstrap on a large holdout (examples/bootstrap.rs): the per-row path the
# dataset gate takes against the general one and the floor, in one process; then the peer, the
# same bootstrap written with numpy (bench/bootstrap_numpy.py), on the same data. Prints two
# JSON lines.
# Usage: bench/bootstrap.sh [ROWS] [RESAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(scripts/setup.sh)
cargo build --release --quiet --example bootstrap
"$(scripts/target-dir.sh)/release/examples/bootstrap" "${1:-1000000}" "${2:-1000}"
"$venv/bin/python" bench/bootstrap_numpy.py "${1:-1000000}" "${2:-1000}"
