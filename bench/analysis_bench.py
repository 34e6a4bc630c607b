"""Benchmark of issue 19 (post-promotion analysis), on one local MLflow server, one Prometheus
scraping a small exporter every second, and a release daemon. Run via bench/analysis.sh.

1. breach -> rollback, `interval = "5s"`: a champion under analysis whose error rate the
   exporter raises at a random moment; timed from that write to the alias back on the replaced
   version (p50, p95 over N rounds), split into what Prometheus takes to show it and what
   stagegate takes after. The floor, timed in the same script: an ideal watcher that asks
   Prometheus every 5 s as well (it waits interval/2 on average after the breach shows) and
   then runs `stagegate rollback` as a whole process, the way a user would script it.
2. 100 analyses at once (interval 5 s): the daemon's CPU and memory over a minute, queries per
   second sent to Prometheus (Prometheus's own request counter), and MLflow requests per
   second, against the floor of 100 queries / 5 s = 20 per second.
"""
import argparse
import http.server
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from daemon_bench import Daemon, get_json, pct, rest, rss_mib  # noqa: E402

GAUGE = "bench_error_rate"


class Exporter:
    """`/metrics` with one gauge per (model, version), as the bench sets them."""

    def __init__(self):
        self.values = {}
        self.lock = threading.Lock()
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with exporter.lock:
                    lines = [f"# TYPE {GAUGE} gauge"] + [
                        f'{GAUGE}{{model="{m}",version="{v}"}} {x}' for (m, v), x in exporter.values.items()]
                body = ("\n".join(lines) + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set(self, model, version, value):
        with self.lock:
            self.values[(model, version)] = value


class Prometheus:
    def __init__(self, work, exporter_port):
        self.dir = os.path.join(work, "prometheus")
        os.makedirs(self.dir)
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: exporter\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n")
        s = __import__("socket").socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.url = f"http://127.0.0.1:{self.port}"
        binary = os.environ.get("STAGEGATE_PROMETHEUS", "prometheus")
        self.proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={self.dir}/data",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "log"), "w"))
        for _ in range(600):
            try:
                urllib.request.urlopen(self.url + "/-/ready", timeout=1)
                return
            except Exception:
                time.sleep(0.1)
        raise SystemExit("Prometheus did not become ready")

    def value(self, promql):
        q = urllib.parse.urlencode({"query": promql})
        r = get_json(f"{self.url}/api/v1/query?{q}")
        res = r["data"]["result"]
        return float(res[0]["value"][1]) if res else None

    def queries(self):
        """Instant queries Prometheus has answered so far (its own counter, read from its
        /metrics: it does not scrape itself here)."""
        text = urllib.request.urlopen(self.url + "/metrics", timeout=10).read().decode()
        return sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def policy(prom, prefix, interval, count):
    return f"""
[[policies]]
name = "watched"
models = ["{prefix}*"]
candidate = {{ alias = "challenger" }}
promote = {{ alias = "champion" }}

  [[policies.gates]]
  name = "metadata"
  type = "tags"
  required = ["ok"]

  [policies.analysis]
  interval = "{interval}"
  count = {count}
  failure_limit = 0
  inconclusive_limit = 3

  [[policies.analysis.metrics]]
  name = "error-rate"
  provider = "prometheus"
  address = "{prom.url}"
  query = '{GAUGE}{{model="{{model}}",version="{{version}}"}}'
  max = 0.05
"""


def alias(uri, model, name):
    status, data = rest(uri, "GET", "registered-models/alias?" + urllib.parse.urlencode({"name": model, "alias": name}))
    return json.loads(data)["model_version"]["version"] if status == 200 else None


def champion_and_challenger(uri, model):
    """v1 the champion (set by hand), v2 a passing challenger."""
    rest(uri, "POST", "registered-models/create", {"name": model})
    for v in ("1", "2"):
        rest(uri, "POST", "model-versions/create", {"name": model, "source": "s3://bench/model", "run_id": "",
                                                     "tags": [{"key": "ok", "value": "1"}]})
    rest(uri, "POST", "registered-models/alias", {"name": model, "alias": "champion", "version": "1"})
    rest(uri, "POST", "registered-models/alias", {"name": model, "alias": "challenger", "version": "2"})


def post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def running(d, model):
    a = get_json(f"{d.url}/v1/analyses?model={model}&limit=1")["analyses"]
    return a[0] if a else None


def wait(what, cond, bound=120, every=0.01):
    t = time.time()
    while time.time() - t < bound:
        got = cond()
        if got:
            return got
        time.sleep(every)
    raise SystemExit(f"timed out: {what}")


def breach_to_rollback(a, work, exporter, prom):
    d = Daemon(a.stagegate, a.uri, os.path.join(work, "breach"), None, "0 0 0 1 1 *",
               policy=policy(prom, "br-", "5s", 1000))
    total, shown, after, floor = [], [], [], []
    try:
        for i in range(a.rounds):
            m = f"br-{i:03d}"
            exporter.set(m, "2", 0.01)
            wait("the healthy value in Prometheus", lambda: prom.value(f'{GAUGE}{{model="{m}",version="2"}}') == 0.01)
            champion_and_challenger(a.uri, m)
            post(d.url + "/v1/evaluations", {"model": m})
            wait("the first round", lambda: (running(d, m) or {}).get("step", 0) >= 1)
            # A random moment within the interval, as a real breach would come.
            time.sleep(random.uniform(0, 5))
            t0 = time.time()
            exporter.set(m, "2", 0.3)
            q = f'{GAUGE}{{model="{m}",version="2"}}'
            wait("Prometheus to show the breach", lambda: prom.value(q) == 0.3)
            t_shown = time.time()
            wait("the rollback", lambda: alias(a.uri, m, "champion") == "1", every=0.005)
            t1 = time.time()
            total.append(t1 - t0)
            shown.append(t_shown - t0)
            after.append(t1 - t_shown)
            print(f"  round {i + 1}: breach -> rolled back {t1 - t0:.2f} s (shown by Prometheus after {t_shown - t0:.2f} s)", flush=True)
        # The floor's rollback: `stagegate rollback` on a promoted champion, as a process.
        cfg = os.path.join(d.dir, "stagegate.toml")
        for i in range(min(a.rounds, 5)):
            m = f"br-fl-{i:03d}"
            champion_and_challenger(a.uri, m)
            exporter.set(m, "2", 0.01)
            post(d.url + "/v1/evaluations", {"model": m})
            wait("the promotion", lambda: alias(a.uri, m, "champion") == "2")
            t = time.time()
            subprocess.run([a.stagegate, "rollback", m, "--config", cfg], check=True, capture_output=True,
                           env=dict(os.environ, MLFLOW_TRACKING_URI=a.uri))
            floor.append(time.time() - t)
    finally:
        d.stop()
    roll = pct(floor, 0.5)
    ideal = [s + random.uniform(0, 5) + roll for s in shown for _ in range(200)]
    print(f"breach -> rollback (interval 5 s, scrape 1 s, {len(total)} rounds): p50 {pct(total, 0.5):.2f} s, p95 {pct(total, 0.95):.2f} s")
    print(f"  of which Prometheus showing it: p50 {pct(shown, 0.5):.2f} s; stagegate after that: p50 {pct(after, 0.5):.2f} s, p95 {pct(after, 0.95):.2f} s")
    print(f"  floor: `stagegate rollback` as a process {roll:.2f} s; an ideal 5 s watcher + that rollback: "
          f"p50 {pct(ideal, 0.5):.2f} s, p95 {pct(ideal, 0.95):.2f} s")
    print(f"  ratio to the floor: p50 {pct(total, 0.5) / pct(ideal, 0.5):.2f}x, p95 {pct(total, 0.95) / pct(ideal, 0.95):.2f}x")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def mlflow_requests(d):
    text = urllib.request.urlopen(d.url + "/metrics", timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("stagegate_mlflow_request_duration_seconds_count"))


def hundred(a, work, exporter, prom):
    n = a.analyses
    d = Daemon(a.stagegate, a.uri, os.path.join(work, "hundred"), None, "0 0 0 1 1 *",
               policy=policy(prom, "h-", "5s", 100000))
    try:
        models = [f"h-{i:04d}" for i in range(n)]
        for m in models:
            exporter.set(m, "2", 0.01)
        time.sleep(2)
        for m in models:
            champion_and_challenger(a.uri, m)
            post(d.url + "/v1/evaluations", {"model": m})
        wait(f"{n} analyses running", lambda: sum(1 for x in get_json(f"{d.url}/v1/analyses?limit=1000")["analyses"]
                                                 if x["status"] == "running" and x["model"].startswith("h-")) >= n,
             bound=600, every=1)
        time.sleep(10)  # past the promotions' own work
        c0, q0, r0, t0 = cpu_seconds(d.proc.pid), prom.queries(), mlflow_requests(d), time.time()
        rss = []
        while time.time() - t0 < a.window:
            rss.append(rss_mib(d.proc.pid))
            time.sleep(1)
        c1, q1, r1, t1 = cpu_seconds(d.proc.pid), prom.queries(), mlflow_requests(d), time.time()
        span = t1 - t0
        steps = [x["step"] for x in get_json(f"{d.url}/v1/analyses?limit=1000")["analyses"] if x["model"].startswith("h-")]
        print(f"{n} analyses at once, interval 5 s, over {span:.0f} s:")
        print(f"  daemon CPU {100 * (c1 - c0) / span:.1f}% of a core; RSS max {max(rss):.1f} MiB")
        print(f"  queries to Prometheus {(q1 - q0) / span:.1f}/s (floor: {n} / 5 s = {n / 5:.1f}/s; "
              f"ratio {(q1 - q0) / span / (n / 5):.2f}x)")
        print(f"  MLflow requests {(r1 - r0) / span:.1f}/s ({(r1 - r0) / max(q1 - q0, 1):.1f} per round: the registry read of the reconcile that takes it)")
        print(f"  daemon CPU per round {1000 * (c1 - c0) / max(q1 - q0, 1):.2f} ms")
        print(f"  rounds per analysis so far: min {min(steps)}, max {max(steps)}")
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--stagegate", required=True)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--analyses", type=int, default=100)
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--only", choices=["breach", "hundred"])
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sg-analysis-bench.")
    exporter = Exporter()
    prom = Prometheus(work, exporter.port)
    try:
        if a.only != "hundred":
            breach_to_rollback(a, work, exporter, prom)
        if a.only != "breach":
            hundred(a, work, exporter, prom)
    finally:
        prom.stop()


if __name__ == "__main__":
    main()
