#!/usr/bin/env bash
# Soak of issue 7 (registry churn with an oracle): HISTORIES seeded histories (default 200) across
# stage/alias x webhooks on/off, plus a sixteenth more with on_fail = archive, against one fresh
# local MLflow server and a release `stagegate run` per configuration. Prints histories, models,
# versions, wrong outcomes (listed), time to quiescence and evaluations per version; exits 1 if
# anything ended wrong. Usage: bench/churn.sh [HISTORIES] [HISTORIES_AT_A_TIME_PER_CONFIG]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv=$(scripts/setup.sh)
cargo build --release --quiet --bin stagegate
# Wherever cargo puts it (CARGO_TARGET_DIR, .cargo/config, a workspace): scripts/target-dir.sh.
bin=$(scripts/target-dir.sh)/release/stagegate
[ -x "$bin" ] || { echo "churn.sh: no stagegate binary from cargo build" >&2; exit 2; }
work=$(mktemp -d -t sg-churn-bench.XXXXXX)
keep=0
cleanup() {
  STAGEGATE_VENV=$venv scripts/mlflow-server.sh stop "$work/mlflow" || true
  if [ "$keep" = 1 ]; then echo "churn.sh: kept $work (MLflow data, daemon logs)" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
# Four MLflow workers: five daemons and their writers share this one server.
uri=$(STAGEGATE_MLFLOW_WORKERS=${STAGEGATE_MLFLOW_WORKERS:-4} MLFLOW_WEBHOOK_CACHE_TTL=1 \
  STAGEGATE_VENV=$venv scripts/mlflow-server.sh start "$work/mlflow")
echo "churn.sh: MLflow at $uri, stagegate $bin, work $work" >&2
"$venv/bin/python" bench/churn_bench.py --uri "$uri" --python "$venv/bin/python" --stagegate "$bin" \
  --work "$work" --histories "${1:-200}" --parallel "${2:-2}" || { keep=1; exit 1; }
