#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/corpus/<target>/ (committed; run again only to change it).

Each seed is a realistic input in the target's layout (see the target's doc comment): a
signed MLflow delivery, stagegate.toml files from the README and tests, MLmodel files as
MLflow 2 and 3 write them, CSV and Parquet holdouts. Needs pyarrow (the project venv has it)
for the Parquet seeds.
"""
import base64
import hashlib
import hmac
import io
import json
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent / "corpus"


def put(target, name, data):
    d = root / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


# --- webhook: flags, id, timestamp, signature, secrets, body -------------------------------
def delivery(body, secret="s3cret", did="d-7f3a", ts="1767225600", flags=0, secrets=None):
    mac = hmac.new(secret.encode(), f"{did}.{ts}.".encode() + body, hashlib.sha256).digest()
    sig = "v1," + base64.b64encode(mac).decode()
    secrets = secrets if secrets is not None else secret
    return bytes([flags]) + "\n".join([did, ts, sig, secrets]).encode() + b"\n" + body


created = json.dumps({"entity": "model_version", "action": "created",
                      "timestamp": "2026-01-01T00:00:00+00:00",
                      "data": {"name": "fraud-model", "version": "3", "source": "models:/m-1",
                               "run_id": None, "tags": {}, "description": None}}).encode()
tag = json.dumps({"entity": "model_version_tag", "action": "set",
                  "timestamp": "2026-01-01T00:00:01+00:00",
                  "data": {"name": "fraud-model", "version": 3, "key": "stagegate.verdict",
                           "value": "passed"}}).encode()
alias = json.dumps({"entity": "model_version_alias", "action": "created",
                    "data": {"name": "fraud-model", "alias": "challenger", "version": "4"}}).encode()
put("webhook", "created-signed", delivery(created))
put("webhook", "tag-rotated-secret", delivery(tag, secret="new", secrets="old,new"))
put("webhook", "alias-stale", delivery(alias, flags=0x70))
put("webhook", "bad-signature", delivery(created, secret="wrong", secrets="s3cret"))
put("webhook", "self-signed-flag", bytes([1]) + b"d1\n1000\nv1,AA==\nk\n" + alias)

# --- config: TOML, NUL, NAME=VALUE lines ----------------------------------------------------
repo = root.parent.parent
demo = (repo / "examples" / "demo.toml").read_text()
put("config", "demo", demo)
put("config", "demo-env", demo + "\0STAGEGATE_WORKERS__COUNT=8\nSTAGEGATE_SERVER__API_TOKEN=t0k\n"
    "STAGEGATE_CONFIG=x.toml\nPATH=/usr/bin\nSTAGEGATE_WEBHOOKS__SECRETS=[a, b]\n")
full = """
[mlflow]
tracking_uri = "http://127.0.0.1:5000"
request_timeout = "30s"
retries = 3
tag_prefix = "stagegate."

[server]
listen = "0.0.0.0:8080"
api_token = "t0ken"
shutdown_grace = "30s"

[webhooks]
secrets = ["one", "two"]
tolerance = "5m"
dedupe_retention = "7d"

[poll]
schedule = "0 */5 * * * *"

[workers]
count = 2
max_attempts = 5
backoff = "2s"
settle = "60s"

[state]
path = "/var/lib/stagegate/stagegate.db"

[serving]
mode = "local"
startup_timeout = "120s"

[[notify]]
url = "http://127.0.0.1:9/hook"
on = ["failed", "promoted"]

[[policies]]
name = "fraud"
models = ["fraud-*", "risk/*"]
candidate = { alias = "challenger" }
promote = { alias = "champion" }
on_fail = "archive"
mode = "dry-run"
on_bypass = "revert"
workdir = "/srv/models"

  [[policies.gates]]
  name = "acc"
  type = "metric"
  metric = "val_accuracy"
  min = 0.8
  max = 1.0
  enforce = false

  [[policies.gates]]
  name = "p99"
  type = "latency"
  p99_ms = 1000.0
  p50_ms = 50.0
  requests = 40
  concurrency = 2
  warmup = 5

  [[policies.gates]]
  name = "edge"
  type = "edge_cases"
  batch_rows = 100
  cases = ["zeros", "nan", "dtype_limits", "batch"]

  [[policies.gates]]
  name = "holdout"
  type = "dataset"
  path = "holdout.parquet"
  label = "target"
  batch_size = 128
  metrics = { accuracy = 0.8, f1_macro = 0.7 }
  slices = { column = "segment", max_gap = { accuracy = 0.15 }, min_rows = 30 }
  vs_champion = { metric = "accuracy", max_drop = 0.0, confidence = 0.95, resamples = 300, seed = 7 }

  [[policies.gates]]
  name = "suite"
  type = "command"
  run = ["python", "-m", "pytest", "tests/model", "-q"]
  timeout = "10m"
  retries = 2
  env = { SEED = "1" }

  [[policies.gates]]
  name = "no-regression"
  type = "champion"
  metric = "val_loss"
  max_drop_ratio = 0.05
  greater_is_better = false
"""
put("config", "full", full)
put("config", "full-env-bad", full + "\0STAGEGATE_WORKERS__COUNT=abc\n")
put("config", "bad-gate-key", demo.replace("min = 0.85", "mn = 0.85"))

# --- mlmodel: the MLmodel file --------------------------------------------------------------
cols = [{"type": "double", "name": "f0", "required": True},
        {"type": "string", "name": "segment", "required": False},
        {"type": "long", "name": "n", "required": True},
        {"type": "boolean", "name": "flag", "required": True},
        {"type": "datetime", "name": "when", "required": False},
        {"type": "array", "items": {"type": "double"}, "name": "vec", "required": False}]
tensors = [{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 4]}}]
named_tensors = [{"type": "tensor", "name": "image", "tensor-spec": {"dtype": "uint8", "shape": [-1, 2, 2, 3]}},
                 {"type": "tensor", "name": "mask", "tensor-spec": {"dtype": "bool", "shape": [-1, 2]}}]


def mlmodel(inputs, mlflow3=True):
    s = json.dumps(inputs)
    head = "artifact_path: mlflow-artifacts:/1/models/m-1/artifacts\n" if mlflow3 else "artifact_path: model\n"
    return (head + "flavors:\n  python_function:\n    env:\n      conda: conda.yaml\n"
            "    loader_module: mlflow.sklearn\n    model_path: model.pkl\n    python_version: 3.11.7\n"
            "  sklearn:\n    pickled_model: model.pkl\n    sklearn_version: 1.5.2\n"
            "mlflow_version: 3.3.2\nmodel_id: m-1\n"
            "saved_input_example_info:\n  artifact_path: input_example.json\n"
            "  serving_input_path: serving_input_example.json\n  type: dataframe\n"
            f"signature:\n  inputs: '{s}'\n  outputs: '[{{\"type\": \"long\", \"required\": true}}]'\n"
            "  params: null\nutc_time_created: '2026-01-01 00:00:00.000000'\n")


put("mlmodel", "columns-mlflow3", mlmodel(cols))
put("mlmodel", "tensor-mlflow2", mlmodel(tensors, mlflow3=False))
put("mlmodel", "named-tensors", mlmodel(named_tensors))
put("mlmodel", "no-signature", "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n")
# MLflow folds long strings over lines, as in the unit test.
put("mlmodel", "folded", "signature:\n  inputs: '[{\"type\": \"double\", \"name\": \"f0\", \"required\": true}, {\"type\": \"string\",\n"
    "    \"name\": \"segment\", \"required\": false}]'\n")

# --- edge_cases: families (2 bytes), batch_rows byte, inputs JSON, NUL, example JSON --------
all_families = (1 << 9) - 1
example = json.dumps({"dataframe_split": {"columns": ["f0", "segment", "n", "flag"],
                                          "data": [[0.25, "b", 7, True]]}})
put("edge_cases", "columns-all", all_families.to_bytes(2, "little") + bytes([9]) + json.dumps(cols).encode()
    + b"\0" + example.encode())
put("edge_cases", "columns-default", (0xff).to_bytes(2, "little") + bytes([3]) + json.dumps(cols[:4]).encode())
put("edge_cases", "tensor", all_families.to_bytes(2, "little") + bytes([4]) + json.dumps(tensors).encode())
put("edge_cases", "named-tensors", all_families.to_bytes(2, "little") + bytes([2]) + json.dumps(named_tensors).encode())
put("edge_cases", "unnamed-columns", all_families.to_bytes(2, "little") + bytes([1])
    + json.dumps([{"type": "float"}, {"type": "integer", "required": False}]).encode())

# --- dataset: flags, label \n slice \n signature, NUL, file -------------------------------
rows = [(f"{i}.5", "a" if i % 2 else "b", str(i % 2), str(i * 3), "true" if i % 3 else "")
        for i in range(12)]
csv = "f0,segment,target,n,flag\n" + "".join(",".join(r) + "\n" for r in rows)
sig = json.dumps([{"type": "double", "name": "f0", "required": True},
                  {"type": "long", "name": "n", "required": True},
                  {"type": "boolean", "name": "flag", "required": False}])
put("dataset", "csv-signature", bytes([4 << 2]) + f"target\nsegment\n{sig}".encode() + b"\0" + csv.encode())
put("dataset", "csv-no-signature", bytes([0]) + b"target\n\n\0" + csv.encode())
put("dataset", "csv-quoted", bytes([1 << 2]) + b"label\n\n\0" + b'"a,b",label,"c""d"\n"x,1",yes,2\n,no,\n')
try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:
    sys.exit("pyarrow is needed for the Parquet seeds (use the project venv: $(scripts/setup.sh)/bin/python)")
table = pa.table({"f0": [i + 0.5 for i in range(12)],
                  "segment": ["a" if i % 2 else "b" for i in range(12)],
                  "target": [i % 2 for i in range(12)],
                  "n": pa.array([i * 3 for i in range(12)], pa.int32()),
                  "flag": [None if i % 5 == 0 else i % 3 == 0 for i in range(12)]})
for name, kw in [("snappy", {"compression": "snappy"}), ("plain", {"compression": "none", "use_dictionary": False})]:
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=5, **kw)
    put("dataset", f"parquet-{name}", bytes([1 | (3 << 2)]) + f"target\nsegment\n{sig}".encode() + b"\0" + buf.getvalue())
# A regression seed: a small file whose FileMetaData has, before its final stop byte, a field 100
# (long form) the parquet crate does not know, holding a list of booleans "of i32::MAX elements"
# (its skipper's seconds-long loop; src/gates/dataset/footer.rs refuses it).
buf = io.BytesIO()
pq.write_table(table.slice(0, 3), buf, compression="none", use_dictionary=False)
data = buf.getvalue()
meta_len = int.from_bytes(data[-8:-4], "little")
meta = data[-8 - meta_len:-8]
assert meta[-1] == 0, "FileMetaData ends with its stop byte"
meta = meta[:-1] + bytes([0x09, 0xC8, 0x01, 0xF1, 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 0x00])
data = data[:-8 - meta_len] + meta + len(meta).to_bytes(4, "little") + b"PAR1"
put("dataset", "regress-footer-bool-list", bytes([0x0D]) + b"target\n\n\0" + data)
print(f"seeds written under {root}")
