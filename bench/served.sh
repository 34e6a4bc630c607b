#!/usr/bin/env bash
# Benchmark of issue 4 (served-model gates): a full policy vs the pytest suite of
# examples/pytest-gates, latency client fidelity, dataset throughput; one fresh local MLflow
# server. Usage: bench/served.sh [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(scripts/setup.sh)
cargo build --release --quiet --bin stagegate --example latency_probe
target=$(scripts/target-dir.sh)
work=$(mktemp -d -t sg-served-bench.XXXXXX)
trap 'STAGEGATE_VENV=$venv scripts/mlflow-server.sh stop "$work/mlflow"; rm -rf "$work"' EXIT
uri=$(STAGEGATE_VENV=$venv scripts/mlflow-server.sh start "$work/mlflow")
"$venv/bin/python" bench/served_bench.py --uri "$uri" --python "$venv/bin/python" \
  --stagegate "$target/release/stagegate" --probe "$target/release/examples/latency_probe" \
  --rounds "${1:-3}"
