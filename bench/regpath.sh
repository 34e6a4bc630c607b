#!/usr/bin/env bash
# Benchmark of the registry path (bench/regpath_bench.py says what is measured): this build
# against BASELINE (default f43574a, the last commit before the registry path was cut), built by
# bench/baseline.sh in its own target directory, the two alternating round by round on one
# fresh local MLflow server.
# Usage: bench/regpath.sh [BASELINE] [regpath_bench.py options, e.g. --daemon-rounds 6]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
baseline=${1:-f43574a}
shift $(( $# > 0 ? 1 : 0 ))
venv=$(scripts/setup.sh)
target=$(scripts/target-dir.sh)
work=$(mktemp -d -t sg-regpath-bench.XXXXXX)
trap 'STAGEGATE_VENV=$venv scripts/mlflow-server.sh stop "$work/mlflow"; git worktree remove --force "$work/before" 2>/dev/null || true; rm -rf "$work"' EXIT
before=$(bench/baseline.sh "$baseline" "$work")
cargo build --release --quiet --bin stagegate
uri=$(MLFLOW_WEBHOOK_CACHE_TTL=1 STAGEGATE_VENV=$venv scripts/mlflow-server.sh start "$work/mlflow")
"$venv/bin/python" bench/regpath_bench.py --uri "$uri" --python "$venv/bin/python" \
  --before "$before" --after "$target/release/stagegate" "$@"
