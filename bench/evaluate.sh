#!/usr/bin/env bash
# Benchmark of issue 2: the hand-made practice (examples/pytest-gates) vs `stagegate evaluate
# --promote` vs the bare REST calls, on one fresh local MLflow server.
# Usage: bench/evaluate.sh [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(scripts/setup.sh)
cargo build --release --quiet
target=$(scripts/target-dir.sh)
work=$(mktemp -d -t sg-bench.XXXXXX)
trap 'STAGEGATE_VENV=$venv scripts/mlflow-server.sh stop "$work/mlflow"; rm -rf "$work"' EXIT
uri=$(STAGEGATE_VENV=$venv scripts/mlflow-server.sh start "$work/mlflow")
"$venv/bin/python" bench/evaluate_bench.py --uri "$uri" --python "$venv/bin/python" \
  --stagegate "$target/release/stagegate" --rounds "${1:-7}" --json-out "$work/result.json"
