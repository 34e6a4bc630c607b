#!/usr/bin/env bash
# Benchmark of issue 11: several replicas on one PostgreSQL (bench/replicas_bench.py says what
# is measured), on a fresh local MLflow server and a throwaway PostgreSQL cluster, with this
# build's SQLite figures against BASELINE (default c456c4a, the last commit before the store
# seam), built in its own target directory (kept for the next run).
# Usage: bench/replicas.sh [BASELINE|none] [replicas_bench.py options, e.g. --kills 10 --lease 3]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
baseline=${1:-c456c4a}
shift $(( $# > 0 ? 1 : 0 ))
export STAGEGATE_APT_PACKAGES="postgresql ${STAGEGATE_APT_PACKAGES:-}"
venv=$(scripts/setup.sh)
target=$(scripts/target-dir.sh)
work=$(mktemp -d -t sg-replicas-bench.XXXXXX)
trap 'STAGEGATE_VENV=$venv scripts/mlflow-server.sh stop "$work/mlflow"; git worktree remove --force "$work/before" 2>/dev/null || true; rm -rf "$work"' EXIT

args=()
if [ "$baseline" != none ]; then
  bench/baseline.sh "$baseline" "$work" >/dev/null
  args=(--baseline "$work/stagegate-before")
fi
cargo build --release --quiet --bin stagegate --example webhook_load
uri=$(MLFLOW_WEBHOOK_CACHE_TTL=1 STAGEGATE_VENV=$venv scripts/mlflow-server.sh start "$work/mlflow")
"$venv/bin/python" bench/replicas_bench.py --uri "$uri" --python "$venv/bin/python" \
  --stagegate "$target/release/stagegate" --load "$target/release/examples/webhook_load" \
  "${args[@]}" "$@"
