"""Benchmark: the hand-made practice vs `stagegate evaluate --promote`, on one MLflow server.

Each round registers two equivalent fresh candidates (tests/fixtures/registry.py: trained,
tagged, in Staging), then times, on the same server:
  practice  examples/pytest-gates: its accuracy, tags and run tests (pytest -k PRACTICE_TESTS),
            then promote_model.py
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
# The practice stagegate replaces (examples/pytest-gates/README.md).
PRACTICE = os.path.join(ROOT, "examples", "pytest-gates")
REGISTRY = os.path.join(ROOT, "tests", "fixtures", "registry.py")
# Its checks that have a registry-only gate below: accuracy floor, tags, complete run.
PRACTICE_TESTS = "validation_accuracy or required_tags or run_is_complete"
TAGS = {"accuracy": "0.9", "training_dataset_version": "v1", "feature_schema_version": "1"}

# The practice's accuracy, tags and run checks, as stagegate gates.
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


def practice_round(python, name, env):
    """The practice on `name`'s newest Staging version: its gate tests, then its promotion
    script. Returns (pytest s, promotion s, the larger peak RSS in MiB, pytest's exit code)."""
    env = dict(env, MODEL_NAME=name)
    t1, rss1, _, _, rc1 = timed_rss([python, "-m", "pytest", "-k", PRACTICE_TESTS], cwd=PRACTICE, env=env)
    t2, rss2, _, err2, rc2 = timed_rss([python, "promote_model.py", name], cwd=PRACTICE, env=env)
    if rc2 != 0:
        raise SystemExit(f"promote_model.py failed: {err2}")
    return t1, t2, max(rss1, rss2), rc1


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
    stamp = int(time.time())
    practice_name, sg_name = f"PracticeBench{stamp}", f"StagegateBench{stamp}"
    rows = []
    for i in range(a.rounds):
        ops = [{"op": "register", "name": n, "stage": "Staging", "tags": TAGS} for n in (practice_name, sg_name)]
        subprocess.run([a.python, REGISTRY, json.dumps(ops)], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t1, t2, practice_rss, rc1 = practice_round(a.python, practice_name, env)
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
        rows.append({"practice_s": t1 + t2, "practice_pytest_rc": rc1, "practice_rss_mib": practice_rss,
                     "stagegate_s": ts, "stagegate_rss_mib": rss_s, "rest_calls": doc["mlflow_requests"],
                     "wire_calls": len(wire), "bare_s": tb})
        print(f"round {i + 1}: practice {t1 + t2:.3f}s  stagegate {ts * 1000:.1f}ms  bare {tb * 1000:.1f}ms  calls {len(wire)}", file=sys.stderr)

    med = {k: statistics.median(r[k] for r in rows) for k in ("practice_s", "stagegate_s", "bare_s", "practice_rss_mib", "stagegate_rss_mib", "rest_calls")}
    summary = {
        "rounds": a.rounds,
        "practice_median_s": round(med["practice_s"], 3),
        "stagegate_median_ms": round(med["stagegate_s"] * 1000, 1),
        "bare_rest_median_ms": round(med["bare_s"] * 1000, 1),
        "speedup_vs_practice": round(med["practice_s"] / med["stagegate_s"], 1),
        "ratio_to_bare_rest": round(med["stagegate_s"] / med["bare_s"], 2),
        "practice_peak_rss_mib": round(med["practice_rss_mib"], 1),
        "stagegate_peak_rss_mib": round(med["stagegate_rss_mib"], 1),
        "stagegate_rest_calls": int(med["rest_calls"]),
        "practice_pytest_exit": rows[-1]["practice_pytest_rc"],
    }
    print(json.dumps(summary, indent=2))
    print(f"\nstagegate evaluate --promote: {summary['stagegate_median_ms']} ms median vs the practice "
          f"{summary['practice_median_s']} s -> {summary['speedup_vs_practice']}x faster (target >= 30x); "
          f"{summary['ratio_to_bare_rest']}x the bare REST calls (target <= 1.5x)")
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"summary": summary, "rounds": rows}, f, indent=2)


if __name__ == "__main__":
    main()
