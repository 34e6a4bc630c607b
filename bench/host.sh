#!/usr/bin/env bash
# Benchmark of the warm scoring host (serving.mode = "host") against `mlflow models serve` per
# evaluation (mode = "local"), the floor, mlflow.models.evaluate, the pytest suite and the daemon;
# one fresh local MLflow server (webhooks on, 1 s webhook cache). Prints markdown tables.
# Usage: bench/host.sh [ROUNDS] [extra options of bench/host_bench.py, e.g. --rows 100000]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(scripts/setup.sh)
cargo build --release --quiet --bin stagegate
target=$(scripts/target-dir.sh)
work=$(mktemp -d -t sg-host-bench.XXXXXX)
trap 'STAGEGATE_VENV=$venv scripts/mlflow-server.sh stop "$work/mlflow"; rm -rf "$work"' EXIT
uri=$(MLFLOW_WEBHOOK_CACHE_TTL=1 STAGEGATE_VENV=$venv scripts/mlflow-server.sh start "$work/mlflow")
rounds=${1:-3}
shift || true
"$venv/bin/python" bench/host_bench.py --uri "$uri" --python "$venv/bin/python" \
  --stagegate "$target/release/stagegate" --rounds "$rounds" --work "$work/bench" "$@"
