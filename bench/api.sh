#!/usr/bin/env bash
# API conformance (issue 8): schemathesis drives every route of the daemon's own
# /openapi.json with every check (server errors, status codes, content types, response
# schemas, headers, negative/positive data, auth…). The daemon runs against a real MLflow
# server with an api_token, a webhook secret and a policy matching two registered models, so
# routes taking a model name see real data. Exits non-zero on any failure.
#
#   bench/api.sh [MAX_EXAMPLES]      # per operation and phase; default 100
#
# Env: STAGEGATE_API_PROFILE=release (default debug: the conformance run needs no speed),
#      STAGEGATE_API_MAX_TIME (hard bound on the schemathesis run, seconds; default 900),
#      STAGEGATE_API_SEED (fixed hypothesis seed, to replay a run),
#      STAGEGATE_API_REPORTS (a directory to keep schemathesis's reports in).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
examples=${1:-100}
profile=${STAGEGATE_API_PROFILE:-debug}
max_time=${STAGEGATE_API_MAX_TIME:-900}

# schemathesis gets its own venv, keyed by the hash of its pinned requirements: it must not
# disturb the pinned MLflow venv, and reruns reuse it.
req=bench/requirements-api.txt
cache=${STAGEGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stagegate}
api_venv="$cache/api-venv-$(sha256sum "$req" | cut -c1-12)"
if [ ! -f "$api_venv/.complete" ]; then
  echo "api: creating the schemathesis venv $api_venv" >&2
  rm -rf "$api_venv"; mkdir -p "$cache"
  python3 -m venv "$api_venv"
  "$api_venv/bin/pip" install --quiet --upgrade pip >&2
  "$api_venv/bin/pip" install --quiet -r "$req" >&2
  touch "$api_venv/.complete"
fi
venv=${STAGEGATE_VENV:-$(scripts/setup.sh)}

if [ "$profile" = release ]; then
  cargo build --release --quiet --bin stagegate
else
  cargo build --quiet --bin stagegate
fi
bin="$(scripts/target-dir.sh)/$profile/stagegate"

work=$(mktemp -d -t sg-api-bench.XXXXXX)
daemon_pid=""
cleanup() {
  [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  STAGEGATE_VENV=$venv scripts/mlflow-server.sh stop "$work/mlflow" || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

uri=$(STAGEGATE_VENV=$venv scripts/mlflow-server.sh start "$work/mlflow")
echo "api: MLflow at $uri; registering two models" >&2
# One stage candidate and one alias candidate with a champion, so history, status and
# evaluation requests have real versions behind them.
MLFLOW_TRACKING_URI=$uri "$venv/bin/python" tests/fixtures/registry.py '[
  {"op": "register", "name": "api-stage", "light": true, "stage": "Staging",
   "tags": {"accuracy": "0.9"}},
  {"op": "register", "name": "api-alias", "light": true, "alias": "champion"},
  {"op": "register", "name": "api-alias", "light": true, "alias": "challenger",
   "metrics": {"val_accuracy": 0.5}}
]' >"$work/fixtures.log" 2>&1 || { cat "$work/fixtures.log" >&2; exit 1; }

token="api-bench-token"
secret="api-bench-secret"
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/stagegate.toml" <<EOF
[mlflow]
tracking_uri = "$uri"

[server]
listen = "127.0.0.1:$port"
api_token = "$token"

[webhooks]
secrets = ["$secret"]

[poll]
schedule = "0 0 * * * *"

[state]
path = "$work/state.db"

[[policies]]
name = "stage"
models = ["api-stage"]
candidate = { stage = "Staging" }
promote = { stage = "Production", archive_existing = true }

  [[policies.gates]]
  name = "accuracy"
  type = "metric"
  metric = "val_accuracy"
  min = 0.8

# Every other name matches, so names schemathesis makes up reach MLflow, odd characters and all.
[[policies]]
name = "alias"
models = ["*"]
candidate = { alias = "challenger" }
promote = { alias = "champion" }

  [[policies.gates]]
  name = "metadata"
  type = "tags"
  required = ["accuracy"]
EOF
MLFLOW_TRACKING_URI=$uri "$bin" run --config "$work/stagegate.toml" 2>"$work/daemon.log" &
daemon_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 200); do curl -fsS "$base/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$base/healthz" >/dev/null || { echo "api: the daemon did not start" >&2; cat "$work/daemon.log" >&2; exit 1; }
# Wait for the start-up poll to record evaluations of both models: the history routes are
# then checked against real rows, not only an empty list.
for _ in $(seq 300); do
  n=$(curl -fsS "$base/v1/evaluations" | "$venv/bin/python" -c 'import json,sys; print(len(json.load(sys.stdin)["evaluations"]))') || n=0
  [ "$n" -ge 2 ] && break; sleep 0.1
done
echo "api: daemon at $base with $n evaluations recorded; running schemathesis" >&2

# Reports (JSON summary, ndjson events with every request and response, the daemon's log)
# are kept only when STAGEGATE_API_REPORTS names a directory.
reports=${STAGEGATE_API_REPORTS:-$work/report}
mkdir -p "$reports"
seed=()
[ -n "${STAGEGATE_API_SEED:-}" ] && seed=(--seed "$STAGEGATE_API_SEED")
start=$(date +%s%N)
set +e
# --checks all: every check schemathesis has. The token is sent on every request; the
# ignored_auth check still sends requests without it and expects 401.
# bench/api_hooks.py signs the webhook requests generated as valid, and steers some names
# to the registered models (see there). Run from the scratch directory: schemathesis keeps
# a crash cache in its working directory and reads a schemathesis.toml found there.
(cd "$work" && SCHEMATHESIS_HOOKS="$root/bench/api_hooks.py" STAGEGATE_API_WEBHOOK_SECRET=$secret \
  STAGEGATE_API_MODELS=api-stage,api-alias \
  timeout --signal=INT "$max_time" "$api_venv/bin/schemathesis" run "$base/openapi.json" \
    --checks all --max-examples "$examples" --workers 2 "${seed[@]}" \
    --header "Authorization: Bearer $token" \
    --generation-database none --no-color \
    --report-json-path "$reports/schemathesis.json" --report-ndjson-path "$reports/events.ndjson" \
    >"$work/schemathesis.log" 2>&1)
rc=$?
set -e
end=$(date +%s%N)
cat "$work/schemathesis.log"
[ "$rc" = 124 ] && echo "api: schemathesis ran over ${max_time}s" >&2
# The daemon must still be up and answering after the run.
alive=1; curl -fsS "$base/healthz" >/dev/null 2>&1 || alive=0
if grep -q panicked "$work/daemon.log"; then
  echo "api: the daemon panicked:" >&2; grep -B2 -A5 panicked "$work/daemon.log" >&2; alive=0
fi
cp "$work/daemon.log" "$reports/"
"$api_venv/bin/python" bench/api_summary.py "$reports" "$(( (end - start) / 1000000 ))" "$rc" "$alive"
