#!/usr/bin/env bash
# A Parquet holdout read as the dataset gate reads it (examples/object_read.rs: open, select
# the label and 20 features, batches of 100,000 rows), from disk and from a local
# S3-compatible server (moto's server mode) holding the same file; rounds alternate. Beside
# it, in the same rounds:
# - the floor: the same server sending the same column chunks to a plain client (boto3, a
#   thread per chunk, bodies read and dropped), nothing decoded;
# - the peer: what a user would run instead, pyarrow reading the same columns through its
#   own S3 filesystem, timed as a whole process.
# Prints one JSON line per read and a summary line (medians). Then:
# - 3 of 40 columns: bytes fetched against the object's size;
# - the memory check: a file of BIG_ROWS rows (6,000,000: about 1 GB) read once from each,
#   peak RSS against RSS at start.
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
"$venv/bin/python" - "$1" "$2" "${3:-20}" <<'PY'
import os, sys, time
import boto3, numpy as np, pyarrow as pa, pyarrow.parquet as pq
rows, path, features = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(0)
cols = {f"feature_{i}": rng.standard_normal(rows) for i in range(features)}
cols["target"] = (cols["feature_0"] > 0).astype("int64")
if features == 20:
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
# The floor: each row group's selected column chunks fetched side by side, as stagegate
# fetches them, and dropped.
floor() {
"$venv/bin/python" - "$@" <<'PY'
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import boto3, pyarrow.parquet as pq
path, key, cols = sys.argv[1], sys.argv[2], set(sys.argv[3:])
meta = pq.ParquetFile(path).metadata
s3 = boto3.client("s3")
def fetch(r):
    body = s3.get_object(Bucket="bench", Key=key, Range=f"bytes={r[0]}-{r[1] - 1}")["Body"]
    n = 0
    while chunk := body.read(1 << 20):
        n += len(chunk)
    return n
started = time.perf_counter()
fetched = 0
for g in range(meta.num_row_groups):
    rg = meta.row_group(g)
    ranges = []
    for c in range(rg.num_columns):
        cc = rg.column(c)
        if cc.path_in_schema in cols:
            start = cc.dictionary_page_offset or cc.data_page_offset
            ranges.append((start, start + cc.total_compressed_size))
    with ThreadPoolExecutor(len(ranges)) as pool:
        fetched += sum(pool.map(fetch, ranges))
secs = time.perf_counter() - started
print(json.dumps({"seconds": secs, "fetched_bytes": fetched}))
PY
}
# The peer, as a whole process: pyarrow's own S3 filesystem, the same columns.
peer() {
"$venv/bin/python" - "$@" <<'PY'
import json, os, resource, sys, time
started = time.perf_counter()
import pyarrow.fs as pafs, pyarrow.parquet as pq
fs = pafs.S3FileSystem(access_key="bench", secret_key="bench", region="us-east-1",
                       endpoint_override=os.environ["AWS_ENDPOINT_URL"], scheme="http")
rows = pq.read_table(sys.argv[1], columns=sys.argv[2:], filesystem=fs).num_rows
secs = time.perf_counter() - started
print(json.dumps({"rows": rows, "seconds": secs, "rows_per_s": rows / secs,
                  "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
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
  echo "{\"round\": $r, \"from\": \"floor\", \"read\": $(floor "$work/holdout.parquet" holdout.parquet $columns)}"
  echo "{\"round\": $r, \"from\": \"pyarrow\", \"read\": $(peer bench/holdout.parquet $columns)}"
done | tee "$work/reads.jsonl"
"$venv/bin/python" - "$work/reads.jsonl" <<'PY'
import json, statistics, sys
reads = [json.loads(l) for l in open(sys.argv[1])]
def med(where, k):
    vals = [r["read"][k] for r in reads if r["from"] == where and k in r["read"]]
    return round(statistics.median(vals), 3) if vals else None
out = {w: {k: med(w, k) for k in ("seconds", "rows_per_s", "rss_peak_mib")}
       for w in ("disk", "s3", "floor", "pyarrow")}
for w in ("disk", "floor", "pyarrow"):
    out[f"s3_over_{w}_seconds"] = round(out["s3"]["seconds"] / out[w]["seconds"], 2)
print(json.dumps({"summary": out}))
PY

# Only 3 of 40 columns needed: what is fetched, against the object's size.
make_file "$rows" "$work/wide.parquet" 39
out=$("$bin" s3://bench/wide.parquet 100000 target feature_0 feature_1)
echo "{\"three_of_40\": true, \"read\": $out}"

make_file "$big" "$work/big.parquet"
size=$(stat -c %s "$work/big.parquet")
for where in disk s3; do
  if [ "$where" = disk ]; then loc="$work/big.parquet"; else loc="s3://bench/big.parquet"; fi
  out=$("$bin" "$loc" 100000 $columns)
  echo "{\"big\": true, \"file_bytes\": $size, \"from\": \"$where\", \"read\": $out}"
done
echo "{\"big\": true, \"from\": \"floor\", \"read\": $(floor "$work/big.parquet" big.parquet $columns)}"
