"""Benchmark of the registry path, two builds side by side on one MLflow server. Run via
bench/regpath.sh.

Both builds run in turn, round after round, their order alternating, so that both see the same
machine (the 2 cores are shared with other work):

1. `stagegate evaluate MODEL --promote` on a fresh Staging candidate of a model with a
   champion (stage targets; the metric, tags and run gates of bench/evaluate.sh): wall time,
   and the MLflow requests it made (its wire log). No webhook is registered, as in
   bench/evaluate.sh.
2. webhook -> promoted (as bench/daemon.sh: alias targets, the same gates, candidates
   registered one at a time by the fixture), each build's daemon with its own webhook; and
   the MLflow requests each daemon made for a candidate between the alias delivery and the
   promotion's audit row.
"""
import argparse
import collections
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from daemon_bench import Daemon, fixture, get_json, latency, pct, rest  # noqa: E402
from evaluate_bench import CONFIG, TAGS, wire_log  # noqa: E402

WIRE = "stagegate=warn,stagegate::mlflow::wire=trace"


def epoch_ms(stamp):
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000


def kind(req):
    """`GET registered-models/get`, `POST model-versions/set-tag`, …"""
    path = urllib.parse.urlparse(req["url"]).path
    for root in ("/api/2.0/mlflow/", "/"):
        if path.startswith(root):
            path = path[len(root):]
            break
    if path.startswith("logged-models/"):
        path = "logged-models/{id}"
    return f"{req['method']} {path}"


def summary(xs):
    return {"n": len(xs), "p50": round(pct(xs, 0.5), 3), "p95": round(pct(xs, 0.95), 3)}


# ---- 1. stagegate evaluate --promote ---------------------------------------------------------

def new_candidate(uri, name, seed):
    """A new version of `name` in Staging, made of the seed version's run and logged model."""
    body = {"name": name, "source": seed["source"], "run_id": seed["run_id"],
            "tags": [{"key": k, "value": v} for k, v in TAGS.items()]}
    if seed["source"].startswith("models:/"):
        body["model_id"] = seed["source"][len("models:/"):]
    status, data = rest(uri, "POST", "model-versions/create", body)
    assert status == 200, data
    version = json.loads(data)["model_version"]["version"]
    status, data = rest(uri, "POST", "model-versions/transition-stage",
                        {"name": name, "version": version, "stage": "Staging", "archive_existing_versions": False})
    assert status == 200, data


def evaluate_once(sg, workdir, uri, name):
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, RUST_LOG="stagegate::mlflow::wire=trace")
    t0 = time.perf_counter()
    p = subprocess.run([sg, "--log-format", "json", "evaluate", name, "--promote", "--json"],
                       cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0 or json.loads(p.stdout)["action"] != "promoted":
        raise SystemExit(f"evaluate {name} exited {p.returncode}: {p.stdout}\n{p.stderr[-2000:]}")
    return wall, collections.Counter(kind(r) for r in wire_log(p.stderr))


def evaluate_rounds(a, builds, work):
    workdir = os.path.join(work, "cli")
    os.makedirs(workdir)
    with open(os.path.join(workdir, "stagegate.toml"), "w") as f:
        f.write(CONFIG.format(uri=a.uri))
    stamp = int(time.time())
    names = {b: f"RegpathCli{b.capitalize()}{stamp}" for b in builds}
    seeds = fixture(a.python, a.uri, [{"op": "register", "name": n, "stage": "Staging", "tags": TAGS} for n in names.values()])
    seed = {s["name"]: s for s in seeds}
    walls, requests = {b: [] for b in builds}, {}
    for r in range(a.evaluate_rounds + 1):
        order = list(builds) if r % 2 == 0 else list(builds)[::-1]
        for b in order:
            if r > 0:
                new_candidate(a.uri, names[b], seed[names[b]])
            wall, reqs = evaluate_once(builds[b], workdir, a.uri, names[b])
            # Round 0 makes the champion the later rounds replace; it is not counted.
            if r > 0:
                walls[b].append(wall)
                requests[b] = reqs
    return {b: {"wall_s": summary(walls[b]), "requests": sum(requests[b].values()),
                "by_endpoint": dict(sorted(requests[b].items()))} for b in builds}


# ---- 2. webhook -> promoted ------------------------------------------------------------------

def delete_webhook(uri, url):
    for h in get_json(uri + "/api/2.0/mlflow/webhooks?max_results=1000").get("webhooks", []):
        if h["url"] == url:
            rest(uri, "DELETE", "webhooks/" + h["webhook_id"])


def requests_per_candidate(d, prefix, runs):
    """The MLflow requests the daemon made for each candidate of `prefix` between its alias
    delivery and its promotion's audit row, told apart by model name, run or logged model."""
    with open(os.path.join(d.dir, "daemon.log")) as f:
        wire = [json.loads(line) for line in f if '"stagegate::mlflow::wire"' in line]
    with d.db() as db:
        spans = db.execute("""SELECT d.model, MIN(d.received_at), (SELECT MIN(at) FROM audit a
                                  WHERE a.model = d.model AND a.action = 'promoted')
                              FROM deliveries d WHERE d.model LIKE ? AND d.event = 'model_version_alias.created'
                              GROUP BY d.model""", (prefix + "%",)).fetchall()
    counts = []
    for model, start, end in spans:
        keys = [model] + runs.get(model, [])
        c = collections.Counter()
        for line in wire:
            req = line["fields"]
            if start <= epoch_ms(line["timestamp"]) <= end and any(k in req["url"] + req["query"] + req["body"] for k in keys):
                c[kind(req)] += 1
        counts.append(c)
    return counts


def daemon_rounds(a, builds, work):
    lat = {b: [] for b in builds}
    per_round = {b: [] for b in builds}
    counts = {b: [] for b in builds}
    for r in range(a.daemon_rounds):
        order = list(builds) if r % 2 == 0 else list(builds)[::-1]
        for b in order:
            prefix = f"rp{int(time.time()) % 100000}{b[0]}{r}-"
            d = Daemon(builds[b], a.uri, os.path.join(work, f"{b}{r}"), [prefix + "*"], "0 0 0 1 1 *", log=WIRE)
            hook = d.url + "/webhooks/mlflow"
            subprocess.run([builds[b], "webhook", "register", "--url", hook, "--name", f"regpath-{b}-{r}",
                            "--config", os.path.join(d.dir, "stagegate.toml")], check=True, capture_output=True,
                           env=dict(os.environ, MLFLOW_TRACKING_URI=a.uri))
            time.sleep(2)  # the server's webhook cache
            print(f"round {r}: {b}…", file=sys.stderr)
            try:
                from_delivery, _ = latency(a, d, a.candidates, prefix)
                d.stop()
            finally:
                delete_webhook(a.uri, hook)
            lat[b] += from_delivery
            per_round[b].append(summary(from_delivery))
            runs = {}
            for mv in get_json(a.uri + "/api/2.0/mlflow/model-versions/search?max_results=1000&filter="
                               + urllib.parse.quote(f"name LIKE '{prefix}%'"))["model_versions"]:
                runs[mv["name"]] = [mv["run_id"], mv["source"].rsplit("/", 1)[-1]]
            counts[b] += requests_per_candidate(d, prefix, runs)
    out = {}
    for b in builds:
        kinds = sorted({k for c in counts[b] for k in c})
        out[b] = {"webhook_to_promoted_s": summary(lat[b]), "rounds": per_round[b],
                  "requests_per_candidate_median": statistics.median(sum(c.values()) for c in counts[b]),
                  "by_endpoint_median": {k: statistics.median(c[k] for c in counts[b]) for k in kinds}}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--before", required=True, help="the baseline's binary")
    ap.add_argument("--after", required=True, help="this build's binary")
    ap.add_argument("--evaluate-rounds", type=int, default=10)
    ap.add_argument("--daemon-rounds", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=15)
    a = ap.parse_args()
    builds = {"before": a.before, "after": a.after}
    work = tempfile.mkdtemp(prefix="sg-regpath-bench-")
    print("evaluate --promote…", file=sys.stderr)
    out = {"evaluate": evaluate_rounds(a, builds, work)}
    print("webhook -> promoted…", file=sys.stderr)
    out["daemon"] = daemon_rounds(a, builds, work)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
