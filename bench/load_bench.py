"""Load benchmark of issue 8, on one local MLflow server. Run via bench/load.sh.

1. burst: RATE signed deliveries a second for SECONDS (created, tag set and alias created in
   turn, over MODELS registered models that match a policy), paced by examples/webhook_load
   (open loop: latency counts from when a delivery was due). Checks that every delivery was
   answered 2xx and recorded once in the store; reports the daemon's RSS before, at the peak
   (sampled every 100 ms, and the kernel's high-water mark) and after the queue drained and
   after the delayed re-checks ran out; the queue's largest depth and delayed wake-ups.
2. dataset gate: webhook latency at GATE_RATE a second with nothing else running, then while a
   dataset gate scores ROWS Parquet rows through the served candidate and champion and runs a
   RESAMPLES-resample paired bootstrap on the same daemon; for this build and, when given,
   an older build (--baseline), so the effect of moving blocking work off the runtime shows.
   With --pin-cpu N the daemons run on one CPU (one async worker thread, as in a one-CPU
   container), where blocking work on that thread stalls everything behind it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from daemon_bench import SECRET, Daemon, get_json, make_models, rest  # noqa: E402
from evaluate_bench import GATES  # noqa: E402

DS_MODEL = "ds-bench"


def load_policy():
    return f"""
[[policies]]
name = "load"
models = ["load-*"]
candidate = {{ alias = "challenger" }}
promote = {{ alias = "champion" }}
{GATES}
"""


def dataset_policy(path, resamples):
    return load_policy() + f"""
[[policies]]
name = "dataset"
models = ["{DS_MODEL}"]
candidate = {{ alias = "challenger" }}
promote = {{ alias = "champion" }}
  [[policies.gates]]
  name = "holdout"
  type = "dataset"
  path = "{path}"
  label = "target"
  batch_size = 5000
  metrics = {{ accuracy = 0.5 }}
  vs_champion = {{ metric = "accuracy", max_drop = 0.5, resamples = {resamples}, seed = 1 }}
"""


def status_int(s, *path):
    for p in path:
        s = (s or {}).get(p)
    return s if isinstance(s, int) else 0


class Sampler(threading.Thread):
    """VmRSS every 100 ms and the queue every 500 ms, until stopped."""

    def __init__(self, d):
        super().__init__(daemon=True)
        self.d, self.stop, self.peak_rss = d, threading.Event(), 0.0
        self.max_depth = self.max_delayed = self.max_in_flight = 0

    def run(self):
        n = 0
        while not self.stop.is_set():
            self.peak_rss = max(self.peak_rss, mem(self.d.proc.pid, "VmRSS"))
            if n % 5 == 0:
                try:
                    q = get_json(self.d.url + "/status")["queue"]
                    self.max_depth = max(self.max_depth, status_int(q, "depth"))
                    self.max_delayed = max(self.max_delayed, status_int(q, "delayed"))
                    self.max_in_flight = max(self.max_in_flight, status_int(q, "in_flight"))
                except Exception:
                    pass
            n += 1
            time.sleep(0.1)


def mem(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def send(a, d, n, rate, mix, conc=64, latencies=None):
    env = dict(os.environ)
    if latencies:
        env["LOAD_LATENCIES"] = latencies
    out = subprocess.run([a.load, d.url + "/webhooks/mlflow", SECRET, str(n), str(conc), "load-", str(a.models), str(rate), mix],
                         check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def wait_queue(d, delayed_too, limit):
    deadline = time.time() + limit
    while time.time() < deadline:
        q = get_json(d.url + "/status")["queue"]
        if status_int(q, "depth") == 0 and status_int(q, "in_flight") == 0 and (not delayed_too or status_int(q, "delayed") == 0):
            return time.time()
        time.sleep(0.5)
    raise SystemExit(f"queue did not drain in {limit} s: {q}")


def burst(a, work):
    d = Daemon(a.stagegate, a.uri, os.path.join(work, "burst"), None, "0 0 0 1 1 *", policy=load_policy())
    time.sleep(3)
    before = mem(d.proc.pid, "VmRSS")
    sampler = Sampler(d)
    sampler.start()
    n = a.rate * a.seconds
    print(f"burst: {n} deliveries at {a.rate}/s…", file=sys.stderr)
    res = send(a, d, n, a.rate, "mix", conc=128)
    sent_done = time.time()
    drained = wait_queue(d, False, 300)
    time.sleep(5)
    after_drain = mem(d.proc.pid, "VmRSS")
    print("burst: waiting for the delayed re-checks to run out…", file=sys.stderr)
    wait_queue(d, True, 300)
    time.sleep(5)
    sampler.stop.set()
    sampler.join()
    with d.db() as db:
        recorded, distinct = db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM deliveries WHERE id LIKE 'load-%'").fetchone()
        by_event = dict(db.execute("SELECT event, COUNT(*) FROM deliveries WHERE id LIKE 'load-%' GROUP BY event").fetchall())
    out = {
        "sent": res["sent"], "answered_2xx": res["ok"], "failed": res["failed"], "seconds": res["seconds"], "per_second": res["per_second"],
        "p50_ms": res["p50_ms"], "p99_ms": res["p99_ms"], "p999_ms": res["p999_ms"], "max_ms": res["max_ms"],
        "recorded": recorded, "recorded_distinct": distinct, "by_event": by_event,
        "queue_drained_after_s": round(drained - sent_done, 1),
        "max_queue_depth": sampler.max_depth, "max_delayed": sampler.max_delayed, "max_in_flight": sampler.max_in_flight,
        "rss_mib": {"before": round(before, 1), "peak_sampled": round(sampler.peak_rss, 1), "peak_hwm": round(mem(d.proc.pid, "VmHWM"), 1),
                    "after_drain": round(after_drain, 1), "after_rechecks": round(mem(d.proc.pid, "VmRSS"), 1)},
    }
    d.stop()
    return out


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] / 1000.0 if xs else float("nan")


def summary(lat):
    return {"n": len(lat), "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "p999_ms": pct(lat, 0.999), "max_ms": max(lat) / 1000.0}


def read_latencies(path):
    with open(path) as f:
        return [int(x) for x in f.read().split()]


def latest_evaluation(d):
    rows = get_json(d.url + f"/v1/evaluations?model={DS_MODEL}&limit=1")
    rows = rows.get("evaluations", rows) if isinstance(rows, dict) else rows
    return rows[0] if rows else None


def gate_run(a, work, label, sg, candidate, champion, data):
    # Each run starts from the same registry: the champion alias on the champion, the
    # challenger alias on a version no daemon has judged.
    rest(a.uri, "POST", "registered-models/alias", {"name": DS_MODEL, "alias": "champion", "version": champion})
    rest(a.uri, "DELETE", "registered-models/alias", {"name": DS_MODEL, "alias": "challenger"})
    # The fixture's or the last run's writes flushed first: writeback stalls the store's fsyncs.
    os.sync()
    time.sleep(5)
    d = Daemon(sg, a.uri, os.path.join(work, f"gate-{label}"), None, "0 0 0 1 1 *", policy=dataset_policy(data, a.resamples))
    time.sleep(3)
    lat_file = os.path.join(work, f"lat-{label}")
    n = a.gate_rate * a.idle_seconds
    print(f"gate[{label}]: {n} deliveries at {a.gate_rate}/s, nothing else running…", file=sys.stderr)
    send(a, d, n, a.gate_rate, "mix", latencies=lat_file)
    idle = read_latencies(lat_file)
    wait_queue(d, False, 120)
    rest(a.uri, "POST", "registered-models/alias", {"name": DS_MODEL, "alias": "challenger", "version": candidate})
    req = urllib.request.Request(d.url + "/v1/evaluations", data=json.dumps({"model": DS_MODEL}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()
    started = time.time()
    print(f"gate[{label}]: dataset gate requested; deliveries at {a.gate_rate}/s until it ends…", file=sys.stderr)
    during, chunks = [], 0
    while True:
        e = latest_evaluation(d)
        if e and str(e.get("version")) == str(candidate) and e.get("finished_at"):
            break
        if time.time() - started > 1800:
            raise SystemExit("the dataset gate did not finish in 30 minutes")
        send(a, d, a.gate_rate * 5, a.gate_rate, "mix", latencies=lat_file)
        during += read_latencies(lat_file)
        chunks += 1
    # Only chunks that ran wholly while the gate ran count: the last one may have overlapped
    # its end, which makes the figure kinder, never harsher.
    d.stop()
    gates = e.get("gates") or []
    return {
        "idle": summary(idle), "during_gate": summary(during), "gate_seconds": round(time.time() - started, 1),
        "verdict": e.get("verdict"), "action": e.get("action"), "error": e.get("error"), "gate": [{"outcome": g.get("outcome"), "message": g.get("message")} for g in gates],
        "p99_during_over_idle": round(pct(during, 0.99) / pct(idle, 0.99), 1),
    }


def pinned(binary, cpu, wrapper):
    """A wrapper that runs `binary` on one CPU: tokio sizes its worker pool from the CPUs a
    process may use, so the daemon gets a single async worker, as in a one-CPU container."""
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec taskset -c {cpu} "{binary}" "$@"\n')
    os.chmod(wrapper, 0o755)
    return wrapper


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--stagegate", required=True)
    ap.add_argument("--baseline", help="an older stagegate binary to compare the dataset-gate run with")
    ap.add_argument("--load", required=True)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--models", type=int, default=500)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--gate-rate", type=int, default=200)
    ap.add_argument("--idle-seconds", type=int, default=20)
    ap.add_argument("--skip-burst", action="store_true")
    ap.add_argument("--pin-cpu", help="run the daemons on this CPU only (taskset): one async worker thread")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sg-load-bench-")
    if a.pin_cpu is not None:
        a.stagegate = pinned(a.stagegate, a.pin_cpu, os.path.join(work, "stagegate-pinned"))
        if a.baseline:
            a.baseline = pinned(a.baseline, a.pin_cpu, os.path.join(work, "baseline-pinned"))
    out = {}
    print(f"registering {a.models} models…", file=sys.stderr)
    make_models(a.uri, "load-", 0, a.models)
    if not a.skip_burst:
        out["burst"] = burst(a, work)
    print(f"dataset fixture: {a.rows} rows…", file=sys.stderr)
    fx = subprocess.run([a.python, os.path.join(HERE, "load_fixture.py"), DS_MODEL, str(a.rows), "2", work],
                        env=dict(os.environ, MLFLOW_TRACKING_URI=a.uri), check=True, capture_output=True, text=True).stdout
    fx = json.loads(fx.strip().splitlines()[-1])
    data = os.path.join(work, "holdout.parquet")
    out["gate"] = {"rows": a.rows, "resamples": a.resamples, "rate": a.gate_rate}
    out["gate"]["this_build"] = gate_run(a, work, "new", a.stagegate, fx["candidates"][0], fx["champion"], data)
    if a.baseline:
        out["gate"]["baseline_build"] = gate_run(a, work, "old", a.baseline, fx["candidates"][1], fx["champion"], data)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
