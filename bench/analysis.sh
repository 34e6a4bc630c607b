#!/usr/bin/env bash
# Benchmark of issue 19 (post-promotion analysis): breach -> rollback with interval 5 s, and
# 100 analyses at once (bench/analysis_bench.py says what is measured and its floors), on a
# fresh local MLflow server and a Prometheus of its own (Debian's package, installed as the
# tests install it). Usage: bench/analysis.sh [analysis_bench.py options, e.g. --rounds 20]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export STAGEGATE_APT_PACKAGES="prometheus ${STAGEGATE_APT_PACKAGES:-}"
venv=$(scripts/setup.sh)
target=$(scripts/target-dir.sh)
work=$(mktemp -d -t sg-analysis-bench.XXXXXX)
trap 'STAGEGATE_VENV=$venv scripts/mlflow-server.sh stop "$work/mlflow"; rm -rf "$work"' EXIT
cargo build --release --quiet --bin stagegate
uri=$(MLFLOW_WEBHOOK_CACHE_TTL=1 STAGEGATE_VENV=$venv scripts/mlflow-server.sh start "$work/mlflow")
"$venv/bin/python" bench/analysis_bench.py --uri "$uri" --stagegate "$target/release/stagegate" "$@"
