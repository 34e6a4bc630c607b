#!/usr/bin/env bash
# The demo, from a fresh machine: a local MLflow server (SQLite, webhooks enabled), the
# stagegate daemon with its webhook registered, then a good and a bad model really trained and
# registered to Staging. Within seconds the daemon has promoted the good one and held back the
# bad one; `stagegate status` shows it. Everything is stopped at the end (DEMO_KEEP=1 keeps
# MLflow and the daemon running).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export STAGEGATE_VENV=$(scripts/setup.sh)
py=$STAGEGATE_VENV/bin/python
echo "== building stagegate" >&2
cargo build --release --quiet
sg=$(scripts/target-dir.sh)/release/stagegate

work=${DEMO_DIR:-$(mktemp -d -t stagegate-demo.XXXXXX)}
# 8080 as in examples/demo.toml when it is free, else any free port.
port=$("$py" -c '
import socket
s = socket.socket()
try:
    s.bind(("127.0.0.1", 8080))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
cleanup() {
  [ -n "${daemon:-}" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  "$root/scripts/mlflow-server.sh" stop "$work/mlflow"
}
[ "${DEMO_KEEP:-}" = 1 ] || trap cleanup EXIT

# Webhook settings the MLflow server needs are set by mlflow-server.sh (see README).
export MLFLOW_TRACKING_URI=$(MLFLOW_WEBHOOK_CACHE_TTL=1 scripts/mlflow-server.sh start "$work/mlflow")
echo "== MLflow at $MLFLOW_TRACKING_URI (state in $work)" >&2
sed "s/127.0.0.1:8080/127.0.0.1:$port/" examples/demo.toml > "$work/stagegate.toml"
cd "$work"

echo "== starting the daemon on 127.0.0.1:$port (log: $work/stagegate.log)" >&2
"$sg" run --config stagegate.toml 2> stagegate.log &
daemon=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
echo; echo "\$ stagegate webhook register --url http://127.0.0.1:$port/webhooks/mlflow"
"$sg" webhook register --config stagegate.toml --url "http://127.0.0.1:$port/webhooks/mlflow" | head -2
sleep 2   # MLflow's webhook cache

tags='{"accuracy": "0.9", "training_dataset_version": "v1", "feature_schema_version": "1"}'
echo; echo "== training and registering to Staging: fraud-model v1 (good), churn-model v1 (bad: trained on noise labels)" >&2
start=$(date +%s.%N)
"$py" "$root/tests/fixtures/registry.py" "[
  {\"op\": \"register\", \"name\": \"fraud-model\", \"stage\": \"Staging\", \"tags\": $tags},
  {\"op\": \"register\", \"name\": \"churn-model\", \"stage\": \"Staging\", \"tags\": $tags, \"degrade\": true}]" >/dev/null
registered=$(date +%s.%N)
for _ in $(seq 300); do
  n=$(curl -fs "http://127.0.0.1:$port/status" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["totals"]["evaluations"])')
  [ "$n" -ge 2 ] && break; sleep 0.1
done
done_at=$(date +%s.%N)
"$py" -c "print('\n== both verdicts %.1f s after registration (training and registering took %.1f s)' % ($done_at - $registered, $registered - $start))"

echo; echo "\$ stagegate status"; "$sg" status --url "http://127.0.0.1:$port"
if [ "${DEMO_KEEP:-}" = 1 ]; then
  echo; echo "== the status page: http://127.0.0.1:$port/ (why churn-model was held back: http://127.0.0.1:$port/models/churn-model)"
  echo "   still running; stop with: kill $daemon; STAGEGATE_VENV=$STAGEGATE_VENV $root/scripts/mlflow-server.sh stop $work/mlflow"
else
  echo; echo "== the status page (http://127.0.0.1:$port/) stops with the demo: DEMO_KEEP=1 bash scripts/demo.sh keeps it running"
fi
echo; echo "== the registry now"
"$py" - <<'PY'
from mlflow.tracking import MlflowClient
c = MlflowClient()
for name in ("fraud-model", "churn-model"):
    for v in c.search_model_versions(f"name='{name}'"):
        print(f"{name} v{v.version}: stage {v.current_stage}")
        for k in sorted(t for t in v.tags if t.startswith("stagegate.") and t != "stagegate.report"):
            print(f"    {k} = {v.tags[k]}")
PY
