"""Benchmark of `stagegate run` (issue 3), on one local MLflow server. Run via bench/daemon.sh.

1. latency: webhook -> promoted for N alias candidates registered one at a time (clock starts
   when the daemon receives the alias.created delivery, and separately when the fixture has set
   the alias), against the wall time of the practice it replaces (examples/pytest-gates) on
   the same kind of candidate;
2. throughput: signed deliveries from a separate load-generating process (examples/webhook_load),
   nothing lost (every delivery id recorded once in the store);
3. RSS: idle, and after 10,000 deliveries;
4. poll: a poll over N registered models (100, 1,000) vs the bare listing REST calls.
"""
import argparse
import http.client
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from evaluate_bench import GATES, TAGS, practice_round  # noqa: E402

SECRET = "bench-secret"


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


class Daemon:
    """A release daemon in its own directory. `policy` replaces the default alias policy
    (models `models`, the gates equivalent to the practice's) with a `[[policies]]` text of
    the caller's (which may end with other tables, `[serving]`). Its stderr is daemon.log;
    with `log` (a RUST_LOG other than the default), in JSON lines."""

    def __init__(self, sg, uri, workdir, models, schedule, policy=None, log=None):
        self.port = free_port()
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        policy = policy or f"""
[[policies]]
name = "bench"
models = {json.dumps(models)}
candidate = {{ alias = "challenger" }}
promote = {{ alias = "champion" }}
{GATES}
"""
        with open(os.path.join(workdir, "stagegate.toml"), "w") as f:
            f.write(f"""
[mlflow]
tracking_uri = "{uri}"
[server]
listen = "127.0.0.1:{self.port}"
[webhooks]
secrets = ["{SECRET}"]
[poll]
schedule = "{schedule}"
[workers]
count = 4
[state]
path = "state.db"
{policy}
""")
        self.log = open(os.path.join(workdir, "daemon.log"), "w")
        env = dict(os.environ, MLFLOW_TRACKING_URI=uri, RUST_LOG=log or "stagegate=warn")
        fmt = ["--log-format", "json"] if log else []
        self.proc = subprocess.Popen([sg, *fmt, "run", "--config", os.path.join(workdir, "stagegate.toml")],
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                get_json(self.url + "/readyz")
                return
            except Exception:
                time.sleep(0.05)
        raise SystemExit("daemon did not become ready")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)

    def db(self):
        return sqlite3.connect(f"file:{os.path.join(self.dir, 'state.db')}?mode=ro", uri=True)


def fixture(py, uri, ops):
    out = subprocess.run([py, os.path.join(ROOT, "tests/fixtures/registry.py"), json.dumps(ops)], env=dict(os.environ, MLFLOW_TRACKING_URI=uri),
                         check=True, capture_output=True, text=True).stdout
    return [json.loads(line[8:]) for line in out.splitlines() if line.startswith("FIXTURE ")]


def rest(uri, method, path, body=None):
    u = urllib.parse.urlparse(uri)
    c = http.client.HTTPConnection(u.hostname, u.port)
    c.request(method, "/api/2.0/mlflow/" + path, body=json.dumps(body) if body else None, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def practice_wall(py, uri, rounds):
    """The practice's wall time (its gate tests, then its promotion script) on a fresh
    candidate in Staging; the median of `rounds`."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, PYTHONDONTWRITEBYTECODE="1")
    name = f"PracticeLatency{int(time.time())}"
    walls = []
    for _ in range(rounds):
        fixture(py, uri, [{"op": "register", "name": name, "stage": "Staging", "tags": TAGS}])
        t1, t2, *_ = practice_round(py, name, env)
        walls.append(t1 + t2)
    return statistics.median(walls)


def latency(a, d, n, prefix="lat-"):
    ops = [{"op": "register", "name": f"{prefix}{i:03d}", "alias": "challenger", "tags": TAGS, "light": True,
            "metrics": {"val_accuracy": 0.9, "val_f1": 0.9}, "pause_after": 1.0} for i in range(n)]
    done = fixture(a.python, a.uri, ops)
    set_at = {r["name"]: r["at"] for r in done}
    deadline = time.time() + 120
    while time.time() < deadline:
        with d.db() as db:
            n_promoted = db.execute("SELECT COUNT(DISTINCT model) FROM audit WHERE action = 'promoted' AND model LIKE ?", (prefix + "%",)).fetchone()[0]
        if n_promoted >= n:
            break
        time.sleep(0.2)
    from_delivery, from_alias = [], []
    with d.db() as db:
        for name, at in set_at.items():
            row = db.execute("SELECT MIN(at) FROM audit WHERE action = 'promoted' AND model = ?", (name,)).fetchone()
            got = db.execute("SELECT MIN(received_at) FROM deliveries WHERE model = ? AND event = 'model_version_alias.created'", (name,)).fetchone()
            if row[0] is None:
                raise SystemExit(f"{name} was not promoted")
            from_alias.append(row[0] / 1000.0 - at)
            if got[0] is not None:
                from_delivery.append((row[0] - got[0]) / 1000.0)
    return from_delivery, from_alias


def throughput(a, d, n, conc):
    out = subprocess.run([a.load, d.url + "/webhooks/mlflow", SECRET, str(n), str(conc), "load-", "100"], check=True, capture_output=True, text=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    with d.db() as db:
        recorded = db.execute("SELECT COUNT(*) FROM deliveries WHERE id LIKE 'load-%'").fetchone()[0]
    res["recorded_total"] = recorded
    return res


def make_models(uri, prefix, start, end):
    for i in range(start, end):
        name = f"{prefix}{i:04d}"
        rest(uri, "POST", "registered-models/create", {"name": name})
        rest(uri, "POST", "model-versions/create", {"name": name, "source": "s3://bench/model", "run_id": ""})


def bare_listing(uri, rounds=8):
    u = urllib.parse.urlparse(uri)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        token = None
        while True:
            q = {"max_results": "1000"}
            if token:
                q["page_token"] = token
            c = http.client.HTTPConnection(u.hostname, u.port)
            c.request("GET", "/api/2.0/mlflow/registered-models/search?" + urllib.parse.urlencode(q))
            body = json.loads(c.getresponse().read())
            c.close()
            token = body.get("next_page_token")
            if not token:
                break
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def poll_duration(d, samples=8):
    seen, durations = None, []
    deadline = time.time() + 60
    while len(durations) < samples and time.time() < deadline:
        p = get_json(d.url + "/status")["poll"]
        if p["last_started"] != seen and p["last_duration_ms"] is not None:
            if seen is not None:
                durations.append(p["last_duration_ms"])
            seen = p["last_started"]
        time.sleep(0.1)
    return statistics.median(durations), get_json(d.url + "/status")["poll"]["last_models"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--stagegate", required=True)
    ap.add_argument("--load", required=True)
    ap.add_argument("--candidates", type=int, default=25)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sg-daemon-bench-")
    out = {}

    d = Daemon(a.stagegate, a.uri, os.path.join(work, "main"), ["lat-*", "load-*"], "0 0 0 1 1 *")
    time.sleep(2)
    out["idle_rss_mib"] = round(rss_mib(d.proc.pid), 1)
    subprocess.run([a.stagegate, "webhook", "register", "--url", d.url + "/webhooks/mlflow", "--name", "bench",
                    "--config", os.path.join(d.dir, "stagegate.toml")], check=True, capture_output=True,
                   env=dict(os.environ, MLFLOW_TRACKING_URI=a.uri))
    time.sleep(2)  # the server's webhook cache
    print("latency…", file=sys.stderr)
    from_delivery, from_alias = latency(a, d, a.candidates)
    practice = practice_wall(a.python, a.uri, 3)
    out["latency"] = {
        "candidates": len(from_alias),
        "webhook_to_promoted_p50_s": round(pct(from_delivery, 0.5), 3), "webhook_to_promoted_p95_s": round(pct(from_delivery, 0.95), 3),
        "alias_set_to_promoted_p50_s": round(pct(from_alias, 0.5), 3), "alias_set_to_promoted_p95_s": round(pct(from_alias, 0.95), 3),
        "practice_s": round(practice, 3), "practice_over_stagegate_p50": round(practice / pct(from_delivery, 0.5), 1),
    }
    print("throughput…", file=sys.stderr)
    runs = []
    for _ in range(2):
        runs.append(throughput(a, d, 10000, 32))
        runs[-1]["rss_mib_after"] = round(rss_mib(d.proc.pid), 1)
    out["throughput"] = runs
    out["rss_after_10000_deliveries_mib"] = runs[0]["rss_mib_after"]
    d.stop()

    print("poll…", file=sys.stderr)
    out["poll"] = []
    made = 0
    for n in (100, 1000):
        make_models(a.uri, "poll-", made, n)
        made = n
        p = Daemon(a.stagegate, a.uri, os.path.join(work, f"poll{n}"), ["poll-*"], "* * * * * *")
        ms, matched = poll_duration(p)
        p.stop()
        bare = bare_listing(a.uri)
        out["poll"].append({"models": matched, "poll_ms": ms, "bare_listing_ms": round(bare, 1), "ratio": round(ms / bare, 2)})
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
