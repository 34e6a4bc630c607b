#!/usr/bin/env bash
# A Parquet holdout read as the dataset gate reads it (examples/object_read.rs: open, select
# the label and 20 features, batches of 100,000 rows), from disk and from a local
# S3-compatible server (moto's server mode) holding the same file; rounds alternate. Prints
# one JSON line per read and a summary line (medians). Then the memory check: a file of
# BIG_ROWS rows (6,000,000: about 1 GB) read once from each, peak RSS against RSS at start.
# Usage: bench/objects.sh [ROWS] [ROUNDS] [BIG_ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
rounds=${2:-3}
big=${3:-6000000}
venv=$(scripts/setup.sh)
cargo build --release --quiet --example object_read
bin="$(scripts/target-dir.sh)/release/examples/object_read"
work=$(mktemp -d)
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" > "$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; rm -rf "$work"' EXIT
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench \
  AWS_DEFAULT_REGION=us-east-1
make_file() {
"$venv/bin/python" - "$1" "$2" <<'PY'
import os, sys, time
import boto3, numpy as np, pyarrow as pa, pyarrow.parquet as pq
rows, path = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
cols = {f"feature_{i}": rng.standard_normal(rows) for i in range(20)}
cols["target"] = (cols["feature_0"] > 0).astype("int64")
cols["note"] = np.array(["unused column, never read"] * rows)
pq.write_table(pa.table(cols), path)
s3 = boto3.client("s3")
for _ in range(100):
    try:
        s3.create_bucket(Bucket="bench")
        break
    except Exception:
        time.sleep(0.1)
s3.upload_file(path, "bench", os.path.basename(path))
PY
}
make_file "$rows" "$work/holdout.parquet"
columns="target $(seq -f 'feature_%g' 0 19 | tr '\n' ' ')"
size=$(stat -c %s "$work/holdout.parquet")
echo "{\"file_bytes\": $size, \"rows\": $rows}"
for r in $(seq "$rounds"); do
  for where in disk s3; do
    if [ "$where" = disk ]; then loc="$work/holdout.parquet"; else loc="s3://bench/holdout.parquet"; fi
    out=$("$bin" "$loc" 100000 $columns)
    echo "{\"round\": $r, \"from\": \"$where\", \"read\": $out}"
  done
done | tee "$work/reads.jsonl"
"$venv/bin/python" - "$work/reads.jsonl" <<'PY'
import json, statistics, sys
reads = [json.loads(l) for l in open(sys.argv[1])]
med = lambda where, k: statistics.median(r["read"][k] for r in reads if r["from"] == where)
out = {w: {k: round(med(w, k), 3) for k in ("seconds", "rows_per_s", "rss_peak_mib")} for w in ("disk", "s3")}
out["s3_over_disk_seconds"] = round(out["s3"]["seconds"] / out["disk"]["seconds"], 2)
print(json.dumps({"summary": out}))
PY

make_file "$big" "$work/big.parquet"
size=$(stat -c %s "$work/big.parquet")
for where in disk s3; do
  if [ "$where" = disk ]; then loc="$work/big.parquet"; else loc="s3://bench/big.parquet"; fi
  out=$("$bin" "$loc" 100000 $columns)
  echo "{\"big\": true, \"file_bytes\": $size, \"from\": \"$where\", \"read\": $out}"
done
