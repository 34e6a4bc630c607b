#!/usr/bin/env bash
# The demo, from a fresh machine: a local MLflow server (SQLite), a good and a bad model
# really trained and registered to Staging, `stagegate evaluate --promote` on each, and the
# resulting stages and tags. Stops its MLflow at the end (DEMO_KEEP=1 keeps it running).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export STAGEGATE_VENV=$(scripts/setup.sh)
py=$STAGEGATE_VENV/bin/python
echo "== building stagegate" >&2
cargo build --release --quiet
sg=$root/target/release/stagegate

work=${DEMO_DIR:-$(mktemp -d -t stagegate-demo.XXXXXX)}
[ "${DEMO_KEEP:-}" = 1 ] || trap '"$root"/scripts/mlflow-server.sh stop "$work/mlflow"' EXIT
export MLFLOW_TRACKING_URI=$(scripts/mlflow-server.sh start "$work/mlflow")
echo "== MLflow at $MLFLOW_TRACKING_URI (state in $work)" >&2
cp examples/demo.toml "$work/stagegate.toml"
cd "$work"

tags='{"accuracy": "0.9", "training_dataset_version": "v1", "feature_schema_version": "1"}'
echo "== training and registering a good model (v1) and a bad one (v2, shuffled labels)" >&2
"$py" "$root/tests/fixtures/registry.py" "[
  {\"op\": \"register\", \"name\": \"DemoModel\", \"stage\": \"Staging\", \"tags\": $tags},
  {\"op\": \"register\", \"name\": \"DemoModel\", \"stage\": \"Staging\", \"tags\": $tags, \"degrade\": true}]" >/dev/null

echo; echo "\$ stagegate check"; "$sg" check
echo; echo "\$ stagegate evaluate DemoModel 1 --promote"; "$sg" evaluate DemoModel 1 --promote || echo "(exit $?)"
echo; echo "\$ stagegate evaluate DemoModel 2 --promote"; "$sg" evaluate DemoModel 2 --promote || echo "(exit $?: a gate failed, nothing promoted)"

echo; echo "== the registry now"
"$py" - <<'PY'
from mlflow.tracking import MlflowClient
c = MlflowClient()
for v in sorted(c.search_model_versions("name='DemoModel'"), key=lambda v: int(v.version)):
    print(f"DemoModel v{v.version}: stage {v.current_stage}")
    for k in sorted(t for t in v.tags if t.startswith("stagegate.") and t != "stagegate.report"):
        print(f"    {k} = {v.tags[k]}")
PY
