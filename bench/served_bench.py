"""Benchmark of the served-model gates (issue 4), on one local MLflow server. Run via
bench/served.sh.

1. A full policy (metric, latency, edge_cases, dataset on a 5,000-row holdout) on one
   candidate, against the practice it replaces (examples/pytest-gates, its whole pytest suite)
   on the same version; and stagegate's wall time against the serving start-up plus the time
   of the requests themselves.
2. Latency-gate fidelity: the same N requests to the same served model from the gate's client
   (examples/latency_probe) and from a Python `requests` loop; client CPU time per request.
3. Dataset throughput in rows/s, CSV and Parquet.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from evaluate_bench import PRACTICE, timed_rss  # noqa: E402


def policy(serving_cmd, holdout, gates):
    return f"""
[[policies]]
name = "served"
models = ["*"]
candidate = {{ stage = "Staging" }}
promote = {{ stage = "Production" }}
{gates.format(holdout=holdout)}

[serving]
command = "{serving_cmd}"
startup_timeout = "120s"
"""


FULL = """
  [[policies.gates]]
  name = "accuracy"
  type = "metric"
  metric = "val_accuracy"
  min = 0.85

  [[policies.gates]]
  name = "latency"
  type = "latency"
  p99_ms = 100.0
  requests = 100   # the practice's latency test makes 100 predictions
  warmup = 5

  [[policies.gates]]
  name = "edge-cases"
  type = "edge_cases"
  enforce = false  # the LogisticRegression answers NaN with a 400: judged, not blocking

  [[policies.gates]]
  name = "holdout"
  type = "dataset"
  path = "{holdout}"
  label = "target"
  metrics = {{ accuracy = 0.85, f1 = 0.82 }}
"""

DATASET_ONLY = """
  [[policies.gates]]
  name = "holdout"
  type = "dataset"
  path = "{holdout}"
  label = "target"
  metrics = {{ accuracy = 0.5 }}
"""


def run_json(cmd, cwd, env):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    try:
        return wall, json.loads(p.stdout)
    except ValueError:
        raise SystemExit(f"{cmd} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")


def serve_startup(mlflow_cmd, uri, env):
    """Seconds from spawning `mlflow models serve` to its first /ping answer."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = dict(env, PATH=os.path.dirname(mlflow_cmd) + os.pathsep + env.get("PATH", ""))
    t0 = time.perf_counter()
    p = subprocess.Popen([mlflow_cmd, "models", "serve", "-m", uri, "-h", "127.0.0.1", "-p", str(port), "--env-manager", "local"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1):
                break
        except Exception:
            if time.perf_counter() - t0 > 120:
                raise SystemExit("serving did not start")
            time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    return elapsed, p, port


def stop(p):
    import signal
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def python_loop(url, body, n):
    import requests
    s = requests.Session()
    lat = []
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        r = s.post(url, data=body, headers={"Content-Type": "application/json"})
        r.content
        lat.append((time.perf_counter() - t) * 1000)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) * 1e6
    lat.sort()
    return {"client": "python requests", "requests": n, "p50_ms": round(lat[n // 2], 3), "p99_ms": round(lat[int(n * 0.99)], 3),
            "wall_us_per_request": round(wall * 1e6 / n, 1), "cpu_us_per_request": round(cpu / n, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--stagegate", required=True)
    ap.add_argument("--probe", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    mlflow_cmd = os.path.join(os.path.dirname(a.python), "mlflow")
    env = dict(os.environ, MLFLOW_TRACKING_URI=a.uri, PYTHONDONTWRITEBYTECODE="1")
    work = tempfile.mkdtemp(prefix="sg-served-")
    out = {}

    # 1. Full policy vs the practice's suite, on the same version.
    stamp = int(time.time())
    equiv = f"Equivalent{stamp}"
    data5k = os.path.join(work, "5k")
    version = subprocess.run([a.python, os.path.join(HERE, "served_fixture.py"), equiv, "5000", data5k], env=env, check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
    practice_walls = []
    for _ in range(a.rounds):
        t, _, _, _, rc = timed_rss([a.python, "-m", "pytest"], cwd=PRACTICE, env=dict(env, MODEL_NAME=equiv, MODEL_VERSION=version))
        practice_walls.append(t)
    with open(os.path.join(work, "stagegate.toml"), "w") as f:
        f.write(policy(mlflow_cmd, os.path.join(data5k, "holdout.csv"), FULL))
    runs = []
    for _ in range(a.rounds):
        wall, doc = run_json([a.stagegate, "evaluate", equiv, version, "--json"], work, env)
        sv = doc["serving"]
        runs.append({"wall_s": wall, "startup_s": sv["startup_ms"] / 1000, "requests_s": sv["requests_ms"] / 1000, "requests": sv["requests"],
                     "verdict": doc["verdict"], "gates": {g["name"]: [g["outcome"], g["duration_ms"]] for g in doc["gates"]}})
    independent = []
    for _ in range(2):
        t, p, _ = serve_startup(mlflow_cmd, f"models:/{equiv}/{version}", env)
        stop(p)
        independent.append(t)
    med = lambda k: statistics.median(r[k] for r in runs)  # noqa: E731
    out["full_policy"] = {
        "practice_suite_s": round(statistics.median(practice_walls), 2), "practice_suite_exit": rc,
        "stagegate_s": round(med("wall_s"), 2),
        "serve_startup_s": round(med("startup_s"), 2), "model_requests_s": round(med("requests_s"), 2), "model_requests": runs[0]["requests"],
        "independent_serve_startup_s": round(statistics.median(independent), 2),
        "ratio_to_startup_plus_requests": round(med("wall_s") / (med("startup_s") + med("requests_s")), 3),
        "ratio_to_independent_startup_plus_requests": round(med("wall_s") / (statistics.median(independent) + med("requests_s")), 3),
        "speedup_vs_practice_suite": round(statistics.median(practice_walls) / med("wall_s"), 2),
        "last_run": runs[-1],
    }
    print(json.dumps(out["full_policy"], indent=2), file=sys.stderr)

    # 2. Latency fidelity: one server, two clients.
    _, p, port = serve_startup(mlflow_cmd, f"models:/{equiv}/{version}", env)
    try:
        url = f"http://127.0.0.1:{port}/invocations"
        with urllib.request.urlopen(f"{a.uri}/model-versions/get-artifact?name={equiv}&version={version}&path=serving_input_example.json") as r:
            body = r.read().decode()
        body_file = os.path.join(work, "body.json")
        with open(body_file, "w") as f:
            f.write(body)
        n = 2000
        python_loop(url, body, 200)  # warm both the server and the Python client
        probe = json.loads(subprocess.run([a.probe, url, body_file, str(n)], capture_output=True, text=True, check=True).stdout)
        py = python_loop(url, body, n)
        probe2 = json.loads(subprocess.run([a.probe, url, body_file, str(n)], capture_output=True, text=True, check=True).stdout)
    finally:
        stop(p)
    best = min(probe, probe2, key=lambda x: x["cpu_us_per_request"])
    out["latency_fidelity"] = {"stagegate": best, "python": py,
                               "cpu_overhead_ratio_python_over_stagegate": round(py["cpu_us_per_request"] / max(best["cpu_us_per_request"], 0.1), 1)}
    print(json.dumps(out["latency_fidelity"], indent=2), file=sys.stderr)

    # 3. Dataset throughput.
    big = f"Throughput{stamp}"
    data_big = os.path.join(work, "50k")
    vbig = subprocess.run([a.python, os.path.join(HERE, "served_fixture.py"), big, "50000", data_big], env=env, check=True,
                          capture_output=True, text=True).stdout.strip().splitlines()[-1]
    out["dataset_throughput"] = {}
    for fmt in ("csv", "parquet"):
        with open(os.path.join(work, "stagegate.toml"), "w") as f:
            f.write(policy(mlflow_cmd, os.path.join(data_big, f"holdout.{fmt}"), DATASET_ONLY))
        _, doc = run_json([a.stagegate, "evaluate", big, vbig, "--json"], work, env)
        g = doc["gates"][0]
        rows = g["observed"]["dataset"]["rows"]
        sv = doc["serving"]
        gate_s = g["duration_ms"] / 1000
        serving_s = sv["startup_ms"] / 1000
        out["dataset_throughput"][fmt] = {"rows": rows, "gate_s": round(gate_s, 2), "startup_s": round(serving_s, 2),
                                          "model_requests_s": round(sv["requests_ms"] / 1000, 2),
                                          "rows_per_s_excluding_startup": round(rows / (gate_s - serving_s)),
                                          "rows_per_s_outside_the_model": round(rows / max(gate_s - serving_s - sv["requests_ms"] / 1000, 0.001))}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
