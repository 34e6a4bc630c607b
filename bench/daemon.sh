#!/usr/bin/env bash
# Benchmark of issue 3 (the daemon): webhook->promoted latency, receiver throughput, RSS, poll
# cost, on one fresh local MLflow server. Usage: bench/daemon.sh [CANDIDATES]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(scripts/setup.sh)
cargo build --release --quiet --bin stagegate --example webhook_load
target=$(scripts/target-dir.sh)
work=$(mktemp -d -t sg-daemon-bench.XXXXXX)
trap 'STAGEGATE_VENV=$venv scripts/mlflow-server.sh stop "$work/mlflow"; rm -rf "$work"' EXIT
uri=$(MLFLOW_WEBHOOK_CACHE_TTL=1 STAGEGATE_VENV=$venv scripts/mlflow-server.sh start "$work/mlflow")
"$venv/bin/python" bench/daemon_bench.py --uri "$uri" --python "$venv/bin/python" \
  --stagegate "$target/release/stagegate" --load "$target/release/examples/webhook_load" \
  --candidates "${1:-25}"
