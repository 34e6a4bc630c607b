"""Soak of issue 7: hundreds of seeded churn histories (tests/fixtures/churn.py) against one
local MLflow server, one `stagegate run` daemon per configuration. Run via bench/churn.sh.

Configurations: stage/alias x webhooks on/off with on_fail = keep, plus stage + webhooks with
on_fail = archive. Every configuration runs the same seeds (the same plans), a few histories at a
time, all configurations at once; each daemon only matches its own model prefix, so each one's
quiescence is its own. Models of histories that ended right are deleted as the soak goes, so the
registry (and every poll over it) stays small.
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CHURN = os.path.join(ROOT, "tests", "fixtures", "churn.py")
SECRET = "churn-secret"

# (name, mode, webhooks, on_fail). Each daemon's glob is `soak-{name}-*`: no name may extend
# another's (`stage-webhooks-archive` would fall under `stage-webhooks-*` too, and two daemons
# would fight over its models).
CONFIGS = [
    ("stage-poll", "stage", False, "keep"),
    ("stage-webhooks", "stage", True, "keep"),
    ("alias-poll", "alias", False, "keep"),
    ("alias-webhooks", "alias", True, "keep"),
    ("archive-stage-webhooks", "stage", True, "archive"),
]
assert not any(a != b and f"soak-{b}-".startswith(f"soak-{a}-") for a, *_ in CONFIGS for b, *_ in CONFIGS)

# The policy's gates, shared with tests/suite/churn.rs and the oracle in tests/fixtures/churn.py.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "churn_gates.toml")) as f:
    GATES = f.read()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Daemon:
    """A release `stagegate run` for one configuration, as tests/suite/churn.rs configures it."""

    def __init__(self, a, name, mode, webhooks, on_fail):
        self.dir = os.path.join(a.work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prefix = f"soak-{name}-"
        targets = ('candidate = { stage = "Staging" }\npromote = { stage = "Production", archive_existing = true }'
                   if mode == "stage" else 'candidate = { alias = "challenger" }\npromote = { alias = "champion" }')
        hooks = f'[webhooks]\nsecrets = ["{SECRET}"]\n' if webhooks else ""
        self.config = os.path.join(self.dir, "stagegate.toml")
        with open(self.config, "w") as f:
            f.write(f"""[mlflow]
request_timeout = "10s"
[server]
listen = "127.0.0.1:{self.port}"
[state]
path = "state.db"
{hooks}
[poll]
schedule = "{'*/5 * * * * *' if webhooks else '* * * * * *'}"
[workers]
count = 4
backoff = "1s"
{'settle = "3s"' if a.settle else ''}
[[policies]]
name = "churn"
models = ["{self.prefix}*"]
{targets}
on_fail = "{on_fail}"
{GATES}
""")
        env = dict(os.environ, MLFLOW_TRACKING_URI=a.uri, RUST_LOG="stagegate=info")
        self.log = open(os.path.join(self.dir, "daemon.log"), "w")
        self.proc = subprocess.Popen([a.stagegate, "run", "--config", self.config], stdout=subprocess.DEVNULL,
                                     stderr=self.log, env=env)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2).read()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if self.proc.poll() is not None:
                    raise SystemExit(f"{name}: the daemon exited; see {self.dir}/daemon.log")
                time.sleep(0.1)
        self.uri, self.webhook = a.uri, None
        if webhooks:
            out = subprocess.run([a.stagegate, "webhook", "register", "--url", self.url + "/webhooks/mlflow",
                                  "--name", f"soak-{name}", "--config", self.config], check=True, capture_output=True,
                                 text=True, env=dict(os.environ, MLFLOW_TRACKING_URI=a.uri)).stdout
            self.webhook = out.split("(")[1].split(")")[0]  # "… (ID)", as tests/suite/common/daemon.rs reads it
            time.sleep(2)  # the server's webhook cache (MLFLOW_WEBHOOK_CACHE_TTL=1)

    def stop(self):
        if self.webhook:
            # The webhook goes first, while the daemon still answers: MLflow delivers from a
            # small pool with retries, and deliveries queued for a dead port (deleting the
            # webhook does not cancel them) delay every other daemon's events for minutes.
            req = urllib.request.Request(f"{self.uri}/api/2.0/mlflow/webhooks/{self.webhook}", method="DELETE")
            try:
                urllib.request.urlopen(req, timeout=10).read()
                time.sleep(3)  # the webhook cache (1 s), then what was queued drains
            except Exception as e:  # noqa: BLE001 - the server goes away at the end anyway
                print(f"soak: could not delete webhook {self.webhook}: {e}", file=sys.stderr)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def settle_known(a):
    """Whether this stagegate knows `workers.settle` (it refuses unknown keys)."""
    path = os.path.join(a.work, "probe.toml")
    with open(path, "w") as f:
        f.write('[workers]\nsettle = "3s"\n')
    out = subprocess.run([a.stagegate, "check", "--config", path], capture_output=True, text=True,
                         env=dict(os.environ, MLFLOW_TRACKING_URI=a.uri))
    return "`settle`" not in out.stderr  # "unknown key `settle`"


def run_config(a, cfg, seeds, results, lock):
    name, mode, webhooks, on_fail = cfg
    d = Daemon(a, name, mode, webhooks, on_fail)
    try:
        cmd = [a.python, CHURN, "--mode", mode, "--on-fail", on_fail, "--prefix", d.prefix, "--daemon", d.url,
               "--histories", str(len(seeds)), "--first-seed", str(seeds[0]), "--models", str(a.models),
               "--parallel", str(a.parallel), "--cleanup"]
        with open(os.path.join(d.dir, "churn.log"), "w") as err:
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                 env=dict(os.environ, MLFLOW_TRACKING_URI=a.uri))
        line = next((l[6:] for l in reversed(out.stdout.splitlines()) if l.startswith("CHURN ")), None)
        report = json.loads(line) if line else {"harness_errors": [f"no CHURN line (exit {out.returncode})"]}
    finally:
        d.stop()
    with lock:
        results[name] = report
        print(f"soak: {name} done: {len(report.get('wrong', []))} wrong, "
              f"{len(report.get('harness_errors', []))} harness errors", file=sys.stderr, flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--stagegate", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--histories", type=int, default=200, help="across the four keep configurations")
    ap.add_argument("--archive", type=int, default=-1, help="extra histories with on_fail=archive (default: a sixteenth)")
    ap.add_argument("--models", type=int, default=5)
    # Two at a time per configuration (ten histories, fifty writers, five daemons in all) is
    # what one SQLite MLflow server on 2 cores serves without the daemons' evaluations taking
    # 10+ s each; at three, waits on the daemon start to expire from overload alone.
    ap.add_argument("--parallel", type=int, default=2, help="histories at a time per configuration")
    ap.add_argument("--first-seed", type=int, default=1000)
    a = ap.parse_args()
    a.settle = settle_known(a)
    if not a.settle:
        print("soak: this stagegate refuses workers.settle; running without it", file=sys.stderr)
    per = max(1, a.histories // 4)
    archive = a.archive if a.archive >= 0 else per // 4
    plan = [(c, per if c[3] == "keep" else archive) for c in CONFIGS]
    plan = [(c, n) for c, n in plan if n > 0]
    results, lock, t0 = {}, threading.Lock(), time.time()
    threads = [threading.Thread(target=run_config, args=(a, c, list(range(a.first_seed, a.first_seed + n)), results, lock))
               for c, n in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - t0

    rows, wrong, errors, quiet = [], [], [], []
    for (name, *_), _ in plan:
        r = results.get(name, {})
        hs = r.get("histories", [])
        q = [h["time_to_quiescence_s"] for h in hs if h.get("time_to_quiescence_s") is not None]
        quiet += q
        wrong += [f"[{name}] {w}" for w in r.get("wrong", [])]
        errors += [f"[{name}] {e}" for e in r.get("harness_errors", [])]
        rows.append({"config": name, "histories": len(hs), "models": r.get("models", 0), "versions": r.get("versions", 0),
                     "candidates": r.get("candidates", 0), "evaluations": r.get("evaluations", 0),
                     "wrong": len(r.get("wrong", [])), "histories_wrong": sum(1 for h in hs if h.get("wrong")),
                     "triggers": r.get("triggers", {}),
                     "notes": len(r.get("notes", [])),
                     "quiescence_median_s": round(statistics.median(q), 2) if q else None})
    tot = lambda k: sum(r[k] for r in rows)  # noqa: E731
    summary = {
        "wall_s": round(wall, 1), "settle": a.settle, "histories": tot("histories"), "models": tot("models"),
        "versions": tot("versions"), "candidates": tot("candidates"), "evaluations": tot("evaluations"),
        "evaluations_per_version": round(tot("evaluations") / max(1, tot("versions")), 2),
        "evaluations_per_candidate": round(tot("evaluations") / max(1, tot("candidates")), 2),
        "wrong": len(wrong), "histories_wrong": tot("histories_wrong"), "harness_errors": len(errors),
        "fair_archives": tot("notes"),
        "quiescence_median_s": round(statistics.median(quiet), 2) if quiet else None,
        "quiescence_max_s": max(quiet) if quiet else None,
        "configs": rows,
    }
    print(f"histories {summary['histories']}  models {summary['models']}  versions {summary['versions']} "
          f"(candidates {summary['candidates']})  wall {summary['wall_s']} s")
    print(f"wrong outcomes: {len(wrong)} in {summary['histories_wrong']} histories; harness errors: {len(errors)}; "
          f"fair archives of a slow writer's candidate (not wrong): {summary['fair_archives']}")
    print(f"time to quiescence: median {summary['quiescence_median_s']} s, max {summary['quiescence_max_s']} s")
    print(f"evaluations per version: {summary['evaluations_per_version']} (per candidate {summary['evaluations_per_candidate']})")
    for r in rows:
        print(f"  {r['config']:<24} histories {r['histories']:>3}  versions {r['versions']:>4}  wrong {r['wrong']:>3}  "
              f"quiescence median {r['quiescence_median_s']} s  triggers {r['triggers']}")
    for w in wrong + errors:
        print("  " + w)
    print(json.dumps(summary))
    return 1 if wrong or errors else 0


if __name__ == "__main__":
    sys.exit(main())
