#!/usr/bin/env bash
# Load benchmark of issue 8: a paced burst of signed webhooks (default 1,000/s for 60 s over
# 500 models) with RSS and "every delivery recorded once"; then webhook latency while a
# 1,000,000-row dataset gate with a 10,000-resample bootstrap runs on the same daemon, for
# this build and for BASELINE (default d903053, the last commit before blocking work moved
# off the async runtime), built in its own target directory (kept for the next run).
# Usage: bench/load.sh [BASELINE|none] [load_bench.py options, e.g. --seconds 10 --rows 100000]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
baseline=${1:-d903053}
shift $(( $# > 0 ? 1 : 0 ))
venv=$(scripts/setup.sh)
target=$(scripts/target-dir.sh)
work=$(mktemp -d -t sg-load-bench.XXXXXX)
trap 'STAGEGATE_VENV=$venv scripts/mlflow-server.sh stop "$work/mlflow"; git worktree remove --force "$work/before" 2>/dev/null || true; rm -rf "$work"' EXIT

args=()
if [ "$baseline" != none ]; then
  bench/baseline.sh "$baseline" "$work" >/dev/null
  args=(--baseline "$work/stagegate-before")
fi
cargo build --release --quiet --bin stagegate --example webhook_load
# The dataset gate serves models with the venv's `mlflow models serve`.
export PATH="$venv/bin:$PATH"
uri=$(MLFLOW_WEBHOOK_CACHE_TTL=1 STAGEGATE_VENV=$venv scripts/mlflow-server.sh start "$work/mlflow")
"$venv/bin/python" bench/load_bench.py --uri "$uri" --python "$venv/bin/python" \
  --stagegate "$target/release/stagegate" --load "$target/release/examples/webhook_load" \
  "${args[@]}" "$@"
