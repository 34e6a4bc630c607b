#!/usr/bin/env bash
# Poll cost with nothing to do, before and after the inputs fingerprint (issue 7): builds the
# stagegate of BASELINE (default: the last commit before issue 7) next to the current one and
# polls the same registry with both, on one fresh local MLflow server.
# Usage: bench/poll.sh [MODELS] [BASELINE]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
models=${1:-1000}
baseline=${2:-909dc81}
venv=$(scripts/setup.sh)
target=$(scripts/target-dir.sh)
work=$(mktemp -d -t sg-poll-bench.XXXXXX)
trap 'STAGEGATE_VENV=$venv scripts/mlflow-server.sh stop "$work/mlflow"; git worktree remove --force "$work/before" 2>/dev/null; rm -rf "$work"' EXIT

echo "== building the baseline ($baseline) and the current stagegate" >&2
git worktree add --detach --quiet "$work/before" "$baseline"
# Its own target directory (kept for the next run): sharing ours would leave the baseline's
# binary at target/release/stagegate with cargo believing the current one up to date.
(cd "$work/before" && CARGO_TARGET_DIR=$target/poll-baseline cargo build --release --quiet --bin stagegate)
cp "$target/poll-baseline/release/stagegate" "$work/stagegate-before"
cargo build --release --quiet --bin stagegate

uri=$(STAGEGATE_VENV=$venv scripts/mlflow-server.sh start "$work/mlflow")
"$venv/bin/python" bench/poll_bench.py --uri "$uri" --models "$models" \
  --before "$work/stagegate-before" --after "$target/release/stagegate"
