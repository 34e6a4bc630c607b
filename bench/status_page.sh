#!/usr/bin/env bash
# Status page benchmark: the bytes each page and asset serves, and the server time of a model
# page whose model has 500 evaluations (store read + render, p50/p99 over 300 requests), in
# process through the daemon's own router. Prints the JSON line and a summary; figures go in
# docs/benchmarks.md. Usage: bench/status_page.sh [EVALUATIONS] [REQUESTS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --quiet --example status_page
out=$("$(scripts/target-dir.sh)/release/examples/status_page" "${1:-500}" "${2:-300}")
echo "$out"
python3 - "$out" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"model page with {r['evaluations']} evaluations, {r['requests']} requests: "
      f"p50 {r['model_page_ms']['p50']:.2f} ms, p99 {r['model_page_ms']['p99']:.2f} ms")
for uri, n in r["bytes"].items():
    print(f"  {uri:<28} {n / 1024:7.1f} KiB")
PY
