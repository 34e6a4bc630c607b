#!/usr/bin/env bash
# Start or stop a local MLflow tracking server for tests, the demo and benchmarks:
# SQLite backend, proxied artifacts, webhooks enabled for loopback (see README, "Webhooks").
# The server comes from $STAGEGATE_VENV (default: scripts/setup.sh's venv); an MLflow 2 venv
# works too.
#
#   scripts/mlflow-server.sh start DIR [PORT]   # prints the URL; PID in DIR/pid, URL in DIR/url
#   scripts/mlflow-server.sh stop DIR           # stops it (its whole process group) by PID
#
# Restarting with the same DIR (and PORT) keeps the database, artifacts and webhook key.
# STAGEGATE_MLFLOW_ARTIFACTS replaces the artifact flags (default: proxied, under DIR), e.g.
# "--no-serve-artifacts --default-artifact-root s3://bucket/" for a store clients read directly.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cmd=${1:?start|stop}; dir=${2:?DIR}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)

stop() {
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}

case "$cmd" in
  stop) stop ;;
  start)
    venv=${STAGEGATE_VENV:-$("$root/scripts/setup.sh")}
    port=${3:-$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
    # The webhook secrets' key (MLflow >= 3.3; an MLflow 2 venv may lack `cryptography`, and
    # its server has no webhooks to encrypt).
    if [ ! -f "$dir/fernet" ]; then
      "$venv/bin/python" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' > "$dir/fernet.new" 2>/dev/null \
        && mv "$dir/fernet.new" "$dir/fernet" || rm -f "$dir/fernet.new"
    fi
    url="http://127.0.0.1:$port"
    # setsid: the server and its workers form one process group, stopped together.
    MLFLOW_WEBHOOK_ALLOWED_SCHEMES=http,https \
    MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS=true \
    MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=$(cat "$dir/fernet" 2>/dev/null || true) \
    MLFLOW_TRACKING_URI= \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false} \
    MLFLOW_WEBHOOK_CACHE_TTL=${MLFLOW_WEBHOOK_CACHE_TTL:-60} \
    MLFLOW_WEBHOOK_DELIVERY_MAX_WORKERS=${MLFLOW_WEBHOOK_DELIVERY_MAX_WORKERS:-10} \
      setsid "$venv/bin/mlflow" server --host 127.0.0.1 --port "$port" \
        --backend-store-uri "sqlite:///$dir/mlflow.db" \
        ${STAGEGATE_MLFLOW_ARTIFACTS:---artifacts-destination "$dir/artifacts" --serve-artifacts} \
        --workers "${STAGEGATE_MLFLOW_WORKERS:-2}" \
        >>"$dir/server.log" 2>&1 < /dev/null &
    echo $! > "$dir/pid"
    echo "$url" > "$dir/url"
    for _ in $(seq 600); do
      if curl -fsS "$url/health" >/dev/null 2>&1; then echo "$url"; exit 0; fi
      kill -0 "$(cat "$dir/pid")" 2>/dev/null || { echo "mlflow server exited; log:" >&2; tail -20 "$dir/server.log" >&2; exit 1; }
      sleep 0.1
    done
    echo "mlflow server did not answer /health within 60 s; log:" >&2; tail -20 "$dir/server.log" >&2
    stop; exit 1 ;;
  *) echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
