"""Benchmark: the seed practice vs `stagegate evaluate --promote`, on one MLflow server.

Each round registers two equivalent fresh candidates with the seed's own train_register.py,
then times, on the same server:
  seed      pytest tests/model/test_gates.py -k "tags or run_data" + promote.py   (the practice)
  stagegate stagegate evaluate NAME --promote --json, with the equivalent metric/tags/run gates
  bare      the exact REST calls stagegate made in that round (its wire log), replayed
            sequentially (kept-alive or fresh connections, whichever is faster): the floor
Prints medians, ratios, peak RSS and stagegate's REST call count. Run via bench/evaluate.sh.
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = os.path.join(ROOT, "..", "shared", "seed_pipeline")

# The seed practice's tags and run-data checks (plus its accuracy floor), as stagegate gates.
GATES = """
  [[policies.gates]]
  name = "accuracy"
  type = "metric"
  metric = "val_accuracy"
  min = 0.85

  [[policies.gates]]
  name = "metadata"
  type = "tags"
  required = ["accuracy", "training_dataset_version", "feature_schema_version"]

  [[policies.gates]]
  name = "run-complete"
  type = "run"
  metrics = ["val_accuracy", "val_f1"]
  params = ["seed"]
  model_artifact = true
"""

CONFIG = """
[mlflow]
tracking_uri = "{uri}"

[[policies]]
name = "bench"
models = ["*"]
candidate = {{ stage = "Staging" }}
promote = {{ stage = "Production", archive_existing = true }}
""" + GATES.replace("{", "{{").replace("}", "}}")


def timed_rss(cmd, **kw):
    """Run cmd via wait4 to get its own peak RSS (MiB) as well as its wall time."""
    t0 = time.perf_counter()
    out_f, err_f = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    p = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, **kw)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    out_f.seek(0), err_f.seek(0)
    return elapsed, usage.ru_maxrss / 1024.0, out_f.read().decode(), err_f.read().decode(), p.returncode


def replay(uri, wire, keep_alive):
    """Send the logged requests sequentially, on one kept-alive connection or on a fresh
    connection each; return seconds."""
    u = urllib.parse.urlparse(uri)
    conn = http.client.HTTPConnection(u.hostname, u.port)
    t0 = time.perf_counter()
    for req in wire:
        if not keep_alive:
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port)
        path = urllib.parse.urlparse(req["url"]).path
        query = [tuple(kv) for kv in json.loads(req["query"])] if req["query"] else []
        if query:
            path += "?" + urllib.parse.urlencode(query)
        body = req["body"] or None
        headers = {"Content-Type": "application/json"} if body else {}
        conn.request(req["method"], path, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status >= 400 and "get-artifact" not in path:
            raise SystemExit(f"replay: {req['method']} {path} -> {resp.status}")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def wire_log(stderr):
    reqs = []
    for line in stderr.splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("target") == "stagegate::mlflow::wire":
            reqs.append(ev["fields"])
    return reqs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--stagegate", required=True)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json-out")
    a = ap.parse_args()

    env = dict(os.environ, MLFLOW_TRACKING_URI=a.uri, PYTHONDONTWRITEBYTECODE="1")
    work = tempfile.mkdtemp(prefix="sg-bench-")
    with open(os.path.join(work, "stagegate.toml"), "w") as f:
        f.write(CONFIG.format(uri=a.uri))
    seed_name, sg_name = f"SeedBench{int(time.time())}", f"StagegateBench{int(time.time())}"
    rows = []
    for i in range(a.rounds):
        for name in (seed_name, sg_name):
            subprocess.run([a.python, os.path.join(SEED, "train_register.py"), name], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The seed practice: its gates (tags + run data), then its promotion script.
        seed_env = dict(env, MODEL_NAME=seed_name)
        t1, rss1, out1, _, rc1 = timed_rss([a.python, "-m", "pytest", "tests/model/test_gates.py", "-q", "-p", "no:cacheprovider",
                                           "-k", "tags or run_data"], cwd=SEED, env=seed_env)
        t2, rss2, _, err2, rc2 = timed_rss([a.python, "promote.py", seed_name], cwd=SEED, env=seed_env)
        if rc2 != 0:
            raise SystemExit(f"promote.py failed: {err2}")
        # stagegate, with its wire log on (a few microseconds an event).
        sg_env = dict(env, RUST_LOG="stagegate::mlflow::wire=trace")
        ts, rss_s, out_s, err_s, rc_s = timed_rss([a.stagegate, "--log-format", "json", "evaluate", sg_name, "--promote", "--json"],
                                                  cwd=work, env=sg_env)
        if rc_s != 0:
            raise SystemExit(f"stagegate exited {rc_s}: {out_s}\n{err_s}")
        doc = json.loads(out_s)
        assert doc["action"] == "promoted", doc
        wire = wire_log(err_s)
        # The floor: the faster of the two ways to send the same calls.
        tb = min(replay(a.uri, wire, True), replay(a.uri, wire, False))
        rows.append({"seed_s": t1 + t2, "seed_pytest_rc": rc1, "seed_rss_mib": max(rss1, rss2),
                     "stagegate_s": ts, "stagegate_rss_mib": rss_s, "rest_calls": doc["mlflow_requests"],
                     "wire_calls": len(wire), "bare_s": tb})
        print(f"round {i + 1}: seed {t1 + t2:.3f}s  stagegate {ts * 1000:.1f}ms  bare {tb * 1000:.1f}ms  calls {len(wire)}", file=sys.stderr)

    med = {k: statistics.median(r[k] for r in rows) for k in ("seed_s", "stagegate_s", "bare_s", "seed_rss_mib", "stagegate_rss_mib", "rest_calls")}
    summary = {
        "rounds": a.rounds,
        "seed_median_s": round(med["seed_s"], 3),
        "stagegate_median_ms": round(med["stagegate_s"] * 1000, 1),
        "bare_rest_median_ms": round(med["bare_s"] * 1000, 1),
        "speedup_vs_seed": round(med["seed_s"] / med["stagegate_s"], 1),
        "ratio_to_bare_rest": round(med["stagegate_s"] / med["bare_s"], 2),
        "seed_peak_rss_mib": round(med["seed_rss_mib"], 1),
        "stagegate_peak_rss_mib": round(med["stagegate_rss_mib"], 1),
        "stagegate_rest_calls": int(med["rest_calls"]),
        "seed_pytest_exit": rows[-1]["seed_pytest_rc"],
    }
    print(json.dumps(summary, indent=2))
    print(f"\nstagegate evaluate --promote: {summary['stagegate_median_ms']} ms median vs seed practice "
          f"{summary['seed_median_s']} s -> {summary['speedup_vs_seed']}x faster (target >= 30x); "
          f"{summary['ratio_to_bare_rest']}x the bare REST calls (target <= 1.5x)")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"summary": summary, "rounds": rows}, f, indent=2)


if __name__ == "__main__":
    main()
