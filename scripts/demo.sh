#!/usr/bin/env bash
# The demo, from a fresh machine: a local MLflow server (SQLite, webhooks enabled), the
# stagegate daemon with its webhook registered, then a good and a bad model really trained and
# registered to Staging. Within seconds the daemon has promoted the good one and held back the
# bad one; `stagegate status` shows it. Everything is stopped and the temporary folder removed
# at the end (DEMO_KEEP=1 keeps MLflow, the daemon and the folder; DEMO_DIR=DIR uses DIR and
# keeps it). The first run compiles stagegate in release mode: several minutes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export STAGEGATE_VENV=$(scripts/setup.sh)
py=$STAGEGATE_VENV/bin/python
echo "== building stagegate (release; the first build takes several minutes)" >&2
cargo build --release --quiet
sg=$(scripts/target-dir.sh)/release/stagegate

# The fixture's Python: its warnings and notices are not the demo's (errors still show).
export PYTHONWARNINGS=ignore MLFLOW_LOGGING_LEVEL=ERROR MLFLOW_DISABLE_TELEMETRY=true

made_work=
if [ -n "${DEMO_DIR:-}" ]; then work=$DEMO_DIR; else work=$(mktemp -d -t stagegate-demo.XXXXXX); made_work=1; fi
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
  if [ -n "${daemon:-}" ]; then kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null; fi
  "$root/scripts/mlflow-server.sh" stop "$work/mlflow"
  cd "$root"
  if [ -n "$made_work" ]; then rm -rf "$work"; fi
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
# Shown in part; captured first, since a pipe closed early (`| head`) would fail the command.
"$sg" webhook register --config stagegate.toml --url "http://127.0.0.1:$port/webhooks/mlflow" > webhook.txt
head -2 webhook.txt
sleep 2   # MLflow's webhook cache

tags='{"accuracy": "0.9", "training_dataset_version": "v1", "feature_schema_version": "1"}'
echo; echo "== training and registering to Staging: fraud-model v1 (good), churn-model v1 (bad: trained on noise labels)" >&2
start=$(date +%s.%N)
"$py" "$root/tests/fixtures/registry.py" "[
  {\"op\": \"register\", \"name\": \"fraud-model\", \"stage\": \"Staging\", \"tags\": $tags},
  {\"op\": \"register\", \"name\": \"churn-model\", \"stage\": \"Staging\", \"tags\": $tags, \"degrade\": true}]" >/dev/null
registered=$(date +%s.%N)
# Decided = the newest evaluation of each model has its action recorded (what the table shows).
decided='
import json, sys
newest = {}
for e in json.load(sys.stdin).get("recent", []):   # newest first
    newest.setdefault(e["model"], e)
print(int(all((newest.get(m) or {}).get("action") for m in ("fraud-model", "churn-model"))))'
ok=0
for _ in $(seq 600); do
  ok=$(curl -fs "http://127.0.0.1:$port/status" | "$py" -c "$decided" 2>/dev/null || echo 0)
  [ "$ok" = 1 ] && break; sleep 0.1
done
done_at=$(date +%s.%N)
if [ "$ok" = 1 ]; then
  "$py" -c "print('\n== both decided %.1f s after registration (training and registering took %.1f s)' % ($done_at - $registered, $registered - $start))"
else
  echo "== not both decided within 60 s; the daemon's log: $work/stagegate.log" >&2
fi

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
[ "$ok" = 1 ]   # the demo fails when the daemon did not decide both models
