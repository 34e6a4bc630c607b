"""Benchmark of the warm scoring host (`serving.mode = "host"`) against `mlflow models serve`
per evaluation (`mode = "local"`), on one fresh MLflow server. Run via bench/host.sh.

Every figure is a whole process timed from outside (wall time, and peak RSS from wait4), and
every baseline runs in the same rounds as stagegate. Within a round the modes alternate (host,
local, host, local…), so the machine's load weighs on both alike.

1. dataset: one `dataset` gate (accuracy) on a ROWS-row Parquet holdout, a LogisticRegression on
   20 float features; `stagegate evaluate` in both modes, against the floor (bench/host_floor.py:
   load the pyfunc, read the file, predict once, accuracy) and `mlflow.models.evaluate`
   (bench/host_mlflow_evaluate.py), each a fresh Python process.
2. full policy (metric, latency of 100 requests, edge_cases, dataset of 5,000 rows), cold
   `stagegate evaluate` in both modes against the practice's pytest suite (examples/pytest-gates)
   on the same version; a 100-tree RandomForest and a LogisticRegression.
3. latency fidelity: p50/p99 of one latency gate (LAT_REQUESTS requests) on the same model in
   both modes.
4. bulk throughput: the dataset gate on the LogisticRegression (from 1.) and the RandomForest
   (RF_ROWS rows): the model processes' share (`host_python_ms`) and stagegate's.
5. daemon: `stagegate run` with the host warm; from a candidate's alias being set to the
   champion alias having moved to it (the full policy, K candidates of each kind), p50/p95;
   then RSS of the host and of each model (`/status`) before and after bulk scoring.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from daemon_bench import Daemon, get_json, pct, rest  # noqa: E402
from evaluate_bench import PRACTICE, timed_rss  # noqa: E402
from served_bench import DATASET_ONLY as DATASET, FULL  # noqa: E402

MODES = ("host", "local")

LATENCY = """
  [[policies.gates]]
  name = "latency"
  type = "latency"
  p99_ms = 1000.0
  requests = {requests}
  warmup = 20
"""


def serving(mode, mlflow_cmd):
    return f"""
[serving]
mode = "{mode}"
command = "{mlflow_cmd}"
startup_timeout = "300s"
request_timeout = "300s"
"""


def policy(name, models, candidate, promote, gates):
    return f"""
[[policies]]
name = "{name}"
models = {json.dumps(models)}
candidate = {candidate}
promote = {promote}
{gates}
"""


class Bench:
    def __init__(self, a):
        self.a = a
        self.mlflow = os.path.join(os.path.dirname(a.python), "mlflow")
        self.env = dict(os.environ, MLFLOW_TRACKING_URI=a.uri, PYTHONDONTWRITEBYTECODE="1", MLFLOW_DISABLE_TELEMETRY="true")
        self.work = a.work or tempfile.mkdtemp(prefix="sg-host-bench-")
        os.makedirs(self.work, exist_ok=True)
        self.stamp = int(time.time())

    def log(self, *args):
        print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)

    def fixture(self, name, rows, kind, formats="parquet", versions=1, stage="Staging"):
        out = os.path.join(self.work, name)
        p = subprocess.run([self.a.python, os.path.join(HERE, "served_fixture.py"), name, str(rows), out, "--kind", kind,
                            "--formats", formats, "--versions", str(versions), "--stage", stage],
                           env=self.env, check=True, capture_output=True, text=True)
        return p.stdout.strip().splitlines()[-1].split(), out

    def evaluate(self, mode, name, version, gates):
        """One cold `stagegate evaluate --json` in `mode`: its wall time, peak RSS, report."""
        d = os.path.join(self.work, f"eval-{mode}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "stagegate.toml"), "w") as f:
            f.write(policy("bench", ["*"], '{ stage = "Staging" }', '{ stage = "Production" }', gates) + serving(mode, self.mlflow))
        wall, rss, out, err, rc = timed_rss([self.a.stagegate, "evaluate", name, version, "--json"], cwd=d,
                                            env=dict(self.env, RUST_LOG="stagegate=info"))
        try:
            doc = json.loads(out)
        except ValueError:
            raise SystemExit(f"stagegate evaluate failed ({rc}):\n{out}\n{err[-3000:]}")
        started = re.search(r"scoring host started.* ms=(\d+)", err)
        sv = doc.get("serving") or {}
        return {"mode": mode, "wall_s": wall, "rss_mib": rss, "exit": rc, "verdict": doc.get("verdict"),
                "host_start_s": int(started.group(1)) / 1000 if started else 0.0,
                "startup_s": sv.get("startup_ms", 0) / 1000, "requests": sv.get("requests", 0),
                "requests_s": sv.get("requests_ms", 0) / 1000, "python_s": sv.get("host_python_ms", 0) / 1000,
                "gates": {g["name"]: {"outcome": g["outcome"], "s": g["duration_ms"] / 1000, "observed": g.get("observed")}
                          for g in doc["gates"]}}

    def process(self, cmd, cwd=None, env_extra=None, check=True):
        """A fresh process: its wall time, peak RSS, exit code and last line of output."""
        wall, rss, out, err, rc = timed_rss(cmd, cwd=cwd, env=dict(self.env, **(env_extra or {})))
        if rc != 0 and check:
            raise SystemExit(f"{cmd} failed ({rc}):\n{out}\n{err[-3000:]}")
        return {"wall_s": wall, "rss_mib": rss, "exit": rc, "out": out.strip().splitlines()[-1:]}

    def alternate(self, label, fn, reverse=False):
        """fn(mode) for each mode, in the order host, local (or the reverse)."""
        out = {}
        for mode in (MODES[::-1] if reverse else MODES):
            r = fn(mode)
            self.log(f"{label} {mode}: {r['wall_s']:.2f} s")
            out[mode] = r
        return out


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def bulk_fixtures(b):
    """The LogisticRegression and the RandomForest with their large Parquet holdouts:
    label -> (name, version, path)."""
    out = {}
    for label, kind, rows in (("LR", "logistic", b.a.rows), ("RF", "forest", b.a.rf_rows)):
        (v,), d = b.fixture(f"Bulk{label}{b.stamp}", rows, kind)
        out[label] = (f"Bulk{label}{b.stamp}", v, os.path.join(d, "holdout.parquet"))
    return out


def dataset_and_full(b, rounds, bulk):
    """Sections 1-4: every cold measurement, the modes alternating in each round."""
    a = b.a
    lr, rf = bulk["LR"], bulk["RF"]
    full = {}
    for kind, label in (("forest", "RF"), ("logistic", "LR")):
        (v,), d = b.fixture(f"Full{label}{b.stamp}", 5000, kind, formats="csv")
        full[label] = (f"Full{label}{b.stamp}", v, os.path.join(d, "holdout.csv"))
    runs = {k: [] for k in ("dataset", "floor", "mlflow_evaluate", "full_RF", "full_LR", "practice_RF", "practice_LR", "load_RF", "load_LR",
                            "latency_RF", "latency_LR", "bulk_RF")}
    for r in range(rounds):
        b.log(f"round {r + 1}/{rounds}")
        name, v, path = lr
        uri = f"models:/{name}/{v}"
        runs["dataset"].append(b.alternate("dataset 1", lambda m: b.evaluate(m, name, v, DATASET.format(holdout=path))))
        runs["floor"].append(b.process([a.python, os.path.join(HERE, "host_floor.py"), uri, path, "target"]))
        b.log(f"floor: {runs['floor'][-1]['wall_s']:.2f} s")
        runs["mlflow_evaluate"].append(b.process([a.python, os.path.join(HERE, "host_mlflow_evaluate.py"), uri, path, "target"]))
        b.log(f"mlflow.models.evaluate: {runs['mlflow_evaluate'][-1]['wall_s']:.2f} s")
        for label, (fname, fv, fpath) in full.items():
            runs[f"full_{label}"].append(b.alternate(f"full {label}", lambda m: b.evaluate(m, fname, fv, FULL.format(holdout=fpath))))
            runs[f"practice_{label}"].append(b.process([a.python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=PRACTICE,
                                                       env_extra={"MODEL_NAME": fname, "MODEL_VERSION": fv}, check=False))
            b.log(f"pytest suite {label}: {runs[f'practice_{label}'][-1]['wall_s']:.2f} s")
            runs[f"load_{label}"].append(b.process([a.python, os.path.join(HERE, "host_load_floor.py"), f"models:/{fname}/{fv}"]))
            b.log(f"load floor {label}: {runs[f'load_{label}'][-1]['wall_s']:.2f} s")
        for label, (fname, fv, _) in (("RF", rf), ("LR", lr)):
            runs[f"latency_{label}"].append(b.alternate(f"latency {label}", lambda m: b.evaluate(m, fname, fv, LATENCY.format(requests=a.lat_requests))))
        name, v, path = rf
        runs["bulk_RF"].append(b.alternate("bulk RF", lambda m: b.evaluate(m, name, v, DATASET.format(holdout=path))))
    return runs


def fidelity_only(b, rounds, bulk):
    """Section 3 alone, with more rounds: which mode goes first alternates round by round."""
    runs = {"latency_RF": [], "latency_LR": []}
    for r in range(rounds):
        b.log(f"fidelity round {r + 1}/{rounds}")
        for label, (fname, fv, _) in (("RF", bulk["RF"]), ("LR", bulk["LR"])):
            runs[f"latency_{label}"].append(b.alternate(
                f"latency {label}", lambda m: b.evaluate(m, fname, fv, LATENCY.format(requests=b.a.lat_requests)), reverse=r % 2 == 1))
    return runs


def daemon_section(b, k, bulk_models):
    """Section 5: the daemon with the host warm, and its memory."""
    a = b.a
    b.log("daemon fixtures…")
    cands, holdouts = {}, {}
    for kind, label in (("forest", "RF"), ("logistic", "LR")):
        vs, d = b.fixture(f"Daemon{label}{b.stamp}", 5000, kind, formats="csv", versions=k, stage="")
        cands[label] = (f"Daemon{label}{b.stamp}", vs)
        holdouts[label] = os.path.join(d, "holdout.csv")
    bulk = {label: (name, path) for label, (name, _, path) in bulk_models.items()}
    alias = '{ alias = "challenger" }', '{ alias = "champion" }'
    text = "".join(policy(f"daemon-{label}", [name], *alias, FULL.format(holdout=holdouts[label])) for label, (name, _) in cands.items())
    text += "".join(policy(f"bulk-{label}", [name], *alias, DATASET.format(holdout=path)) for label, (name, path) in bulk.items())
    text += serving("host", b.mlflow)
    d = Daemon(a.stagegate, a.uri, os.path.join(b.work, "daemon"), [], "0 0 0 1 1 *", policy=text, log=os.environ.get("BENCH_LOG", "stagegate=info"))
    out = {}
    try:
        subprocess.run([a.stagegate, "webhook", "register", "--url", d.url + "/webhooks/mlflow", "--name", f"bench{b.stamp}",
                        "--config", os.path.join(d.dir, "stagegate.toml")], check=True, capture_output=True, env=b.env)
        host = wait_for(lambda: get_json(d.url + "/status")["serving"]["host"], lambda h: h and h.get("running"), 300, "the host to start")
        time.sleep(2)  # MLflow's webhook cache (1 s) turns over
        out["host_idle"] = {"pid": host["pid"], "rss_mib": mib(host["rss_bytes"]), "import_ms": host.get("import_ms")}
        b.log(f"host up: {out['host_idle']}")
        for label, (name, versions) in cands.items():
            times, failed = [], []
            for v in versions:
                # One candidate at a time on a settled system: the previous promotion's own
                # traffic (its tags' webhooks, the reconcile they cause) done with first.
                time.sleep(a.settle)
                t = promote_timed(b, d, name, v)
                if "failed" in t:
                    b.log(f"daemon {label} v{v}: not promoted: {json.dumps(t['failed'])[:2000]}")
                    failed.append(t["failed"])
                    continue
                b.log(f"daemon {label} v{v}: alias set -> champion {t['from_sent_s']:.3f} s")
                times.append(t)
            if not times:
                raise SystemExit(f"no {label} candidate was promoted")
            rows = evaluations(d, name)
            out[f"candidates_{label}"] = {
                "n": len(times), "failed": failed,
                "from_sent_p50_s": pct([t["from_sent_s"] for t in times], 0.5),
                "from_sent_p95_s": pct([t["from_sent_s"] for t in times], 0.95),
                "from_returned_p50_s": pct([t["from_returned_s"] for t in times], 0.5),
                "from_returned_p95_s": pct([t["from_returned_s"] for t in times], 0.95),
                "all_s": [round(t["from_sent_s"], 3) for t in times],
                "evaluation_ms_p50": pct([r["duration_ms"] for r in rows], 0.5),
                "evaluations": rows,
            }
        out["after_candidates"] = status_memory(d)
        for label, (name, path) in bulk.items():
            samples = []
            stop = threading.Event()
            sampler = threading.Thread(target=sample_status, args=(d, name, samples, stop))
            sampler.start()
            try:
                t = promote_timed(b, d, name, "1", timeout=1800)
            finally:
                stop.set()
                sampler.join()
            ev = evaluations(d, name)[-1]
            out[f"bulk_{label}"] = {
                "alias_to_champion_s": t.get("from_sent_s"), "failed": t.get("failed"), "evaluation": ev,
                "first_seen": samples[0] if samples else {}, "peak_rss_mib": max((x["rss_mib"] for x in samples), default=None),
                "peak_private_mib": max((x.get("private_mib", 0) for x in samples), default=None),
            }
            b.log(f"daemon bulk {label}: {json.dumps(out[f'bulk_{label}'])}")
        out["after_bulk"] = status_memory(d)
    finally:
        d.stop()
    return out


def wait_for(get, ok, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = get()
            if ok(v):
                return v
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def mib(n):
    return round(n / 2**20, 1) if n is not None else None


def champion_of(uri, name):
    q = urllib.parse.urlencode({"name": name, "alias": "champion"})
    try:
        with urllib.request.urlopen(f"{uri}/api/2.0/mlflow/registered-models/alias?{q}", timeout=10) as r:
            return json.load(r)["model_version"]["version"]
    except urllib.error.HTTPError:
        return None


def promote_timed(b, d, name, version, timeout=120):
    """Set alias `challenger` on the version; seconds until the registry's `champion` alias
    names it, from the request being sent and from its answer."""
    sent = time.perf_counter()
    status, body = rest(b.a.uri, "POST", "registered-models/alias", {"name": name, "alias": "challenger", "version": version})
    returned = time.perf_counter()
    if status != 200:
        raise SystemExit(f"setting the alias failed: {status} {body[:300]}")
    deadline = sent + timeout
    # Watch stagegate's own store (a local read), and ask MLflow only once it says the version
    # was promoted: asking MLflow 40 times a second took CPU from the gates being timed. The
    # audit row follows the move, so the time is, if anything, late.
    # One connection and two indexed lookups a turn: the watching itself must cost next to
    # nothing (a loop that read every evaluation of the model took a core's tenth, and more
    # with every candidate).
    with d.db() as db:
        while not promoted(db, name, version) or champion_of(b.a.uri, name) != version:
            if time.perf_counter() > deadline:
                raise SystemExit(f"{name} v{version} was not promoted within {timeout} s; see {d.dir}/daemon.log")
            if db.execute("SELECT 1 FROM evaluations WHERE model = ? AND version = ? AND status = 'done' AND verdict != 'passed'",
                          (name, version)).fetchone():
                return {"failed": [e for e in evaluations(d, name) if e["version"] == version][-1]}
            time.sleep(0.01)
    done = time.perf_counter()
    return {"from_sent_s": done - sent, "from_returned_s": done - returned}


def promoted(db, name, version):
    return db.execute("SELECT 1 FROM audit WHERE model = ? AND version = ? AND action = 'promoted'",
                      (name, version)).fetchone() is not None


def evaluations(d, name):
    with d.db() as db:
        rows = db.execute("SELECT version, duration_ms, verdict, serving, gates FROM evaluations WHERE model = ? AND status = 'done' ORDER BY id",
                          (name,)).fetchall()
    return [{"version": v, "duration_ms": ms, "verdict": verdict, "serving": json.loads(s) if s else None,
             "gates_ms": {g["name"]: g["duration_ms"] for g in json.loads(gates or "[]")}} for v, ms, verdict, s, gates in rows]


def smaps(pid):
    """PSS and private (unshared) memory of a process, MiB: a forked model shares the host's
    pages, which its RSS counts again."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Pss", "Private_Clean", "Private_Dirty"):
                    out[k] = int(v.split()[0]) / 1024
    except OSError:
        return {}
    return {"pss_mib": round(out.get("Pss", 0), 1), "private_mib": round(out.get("Private_Clean", 0) + out.get("Private_Dirty", 0), 1)}


def status_memory(d):
    """/status's memory figures of the host and its models, with PSS and private memory."""
    h = get_json(d.url + "/status")["serving"]["host"]
    return {"host_rss_mib": mib(h["rss_bytes"]), **{f"host_{k}": v for k, v in smaps(h["pid"]).items()},
            "models": [{"model": m["model"], "version": m["version"], "rss_mib": mib(m["rss_bytes"]), "load_ms": m["load_ms"], **smaps(m["pid"])}
                       for m in h["models"]]}


def sample_status(d, name, samples, stop):
    """RSS and private memory of `name`'s model in the host, from /status (and its pid's
    smaps) every 50 ms; nothing while it is not loaded."""
    while not stop.is_set():
        try:
            ms = [m for m in get_json(d.url + "/status")["serving"]["host"]["models"] if m["model"] == name]
            if ms and ms[0]["rss_bytes"]:
                samples.append({"rss_mib": mib(ms[0]["rss_bytes"]), **smaps(ms[0]["pid"])})
        except Exception:
            pass
        time.sleep(0.05)


def summary(runs, daemon, a):
    """The figures and ratios, as markdown tables."""
    lines = []
    if runs:
        cold_summary(runs, a, lines.append)
    if daemon:
        daemon_summary(daemon, a, lines.append)
    return "\n".join(lines)


def cold_summary(runs, a, add):
    if "dataset" not in runs:
        return fidelity_summary(runs, len(runs["latency_LR"]), a, add)
    ds = runs["dataset"]
    host, local = [r["host"] for r in ds], [r["local"] for r in ds]
    floor, mle = med(runs["floor"], "wall_s"), med(runs["mlflow_evaluate"], "wall_s")
    h = med(host, "wall_s")
    add(f"### 1. dataset gate, {a.rows:,} rows, LogisticRegression (median of {len(ds)} rounds)\n")
    add("| measure | value |\n|---|---|")
    add(f"| floor (fresh Python: load pyfunc, read Parquet, predict, accuracy) | {floor:.2f} s |")
    add(f"| mlflow.models.evaluate (fresh Python) | {mle:.2f} s |")
    add(f"| stagegate evaluate, host | **{h:.2f} s** |")
    add(f"| stagegate evaluate, local | {med(local, 'wall_s'):.2f} s |")
    add(f"| **host / floor** | **{h / floor:.2f}×** (target ≤ 1.5×) |")
    add(f"| **host / mlflow.models.evaluate** | **{h / mle:.2f}×** (target ≤ 0.5×) |")
    add(f"| host: scoring host start (imports) / model load | {med(host, 'host_start_s'):.2f} s / {med(host, 'startup_s'):.2f} s |")
    add(f"| host: bulk requests / of which in the model's process | {med(host, 'requests_s'):.2f} s / {med(host, 'python_s'):.2f} s |")
    add(f"| peak RSS: stagegate / floor / mlflow.evaluate | {med(host, 'rss_mib'):.0f} / {med(runs['floor'], 'rss_mib'):.0f} / "
        f"{med(runs['mlflow_evaluate'], 'rss_mib'):.0f} MiB |\n")

    add(f"### 2. full policy, cold stagegate evaluate vs the pytest suite (median of {len(ds)} rounds)\n")
    add("| model | load floor | pytest suite | host | local | **host / suite** | local / suite | above the floor: host / suite | host: start, load, requests (python) |")
    add("|---|---|---|---|---|---|---|---|---|")
    for label in ("RF", "LR"):
        fh, fl = [r["host"] for r in runs[f"full_{label}"]], [r["local"] for r in runs[f"full_{label}"]]
        suite, floor = med(runs[f"practice_{label}"], "wall_s"), med(runs[f"load_{label}"], "wall_s")
        add(f"| {label} | {floor:.2f} s | {suite:.2f} s | {med(fh, 'wall_s'):.2f} s | {med(fl, 'wall_s'):.2f} s | **{med(fh, 'wall_s') / suite:.2f}×** "
            f"| {med(fl, 'wall_s') / suite:.2f}× | {med(fh, 'wall_s') - floor:.2f} s / {suite - floor:.2f} s "
            f"| {med(fh, 'host_start_s'):.2f}, {med(fh, 'startup_s'):.2f}, {med(fh, 'requests_s'):.2f} ({med(fh, 'python_s'):.2f}) s |")
    add("")

    fidelity_summary(runs, len(ds), a, add)
    bulk_summary(runs, a, add)


def fidelity_summary(runs, rounds, a, add):
    add(f"### 3. latency gate fidelity, {a.lat_requests} requests (median of {rounds} rounds; per round host/local)\n")
    add("| model | host p50 | local p50 | p50 host/local | host p99 | local p99 | p99 host/local |")
    add("|---|---|---|---|---|---|---|")
    for label in ("RF", "LR"):
        obs = {m: [r[m]["gates"]["latency"]["observed"] for r in runs[f"latency_{label}"]] for m in MODES}
        p = {(m, q): statistics.median(o[f"{q}_ms"] for o in obs[m]) for m in MODES for q in ("p50", "p99")}
        add(f"| {label} | {p['host', 'p50']:.2f} ms | {p['local', 'p50']:.2f} ms | {p['host', 'p50'] / p['local', 'p50']:.3f} "
            f"| {p['host', 'p99']:.2f} ms | {p['local', 'p99']:.2f} ms | {p['host', 'p99'] / p['local', 'p99']:.3f} |")
    add("")


def bulk_summary(runs, a, add):
    add("### 4. bulk scoring throughput (median of rounds; the gate's own time, without host start and model load)\n")
    add("| model | mode | rows | rows/s end to end | model process (decode, predict, encode) | stagegate's share |")
    add("|---|---|---|---|---|---|")
    for label, key in (("LR", "dataset"), ("RF", "bulk_RF")):
        for m in MODES:
            rs = [r[m] for r in runs[key]]
            rows = rs[0]["gates"]["holdout"]["observed"]["dataset"]["rows"]
            # The host loads the candidate before the gates begin (beside the registry reads);
            # `mlflow models serve` starts inside the gate.
            gate = statistics.median(r["gates"]["holdout"]["s"] - (0 if m == "host" else r["host_start_s"] + r["startup_s"]) for r in rs)
            if m == "host":
                py = med(rs, "python_s")
                own = gate - py
                add(f"| {label} | {m} | {rows:,} | {rows / gate:,.0f} | {py:.2f} s ({rows / py:,.0f} rows/s) | {own:.2f} s "
                    f"(of which in requests {med(rs, 'requests_s') - py:.2f} s) |")
            else:
                add(f"| {label} | {m} | {rows:,} | {rows / gate:,.0f} | requests {med(rs, 'requests_s'):.2f} s (HTTP, JSON) "
                    f"| {gate - med(rs, 'requests_s'):.2f} s outside the requests |")
    add("")


def daemon_summary(daemon, a, add):
    add(f"### 5. daemon, host warm: alias set → champion alias moved ({a.candidates} candidates each)\n")
    add("| model | p50 from the request sent | p95 | p50 from its answer | p95 | evaluation p50 (store): model load; latency gate, load included; the rest |")
    add("|---|---|---|---|---|---|")
    for label in ("RF", "LR"):
        c = daemon[f"candidates_{label}"]
        evs = c["evaluations"]
        load = pct([e["serving"]["startup_ms"] for e in evs], 0.5) / 1000
        lat = pct([e["gates_ms"].get("latency", 0) for e in evs], 0.5) / 1000
        add(f"| {label} | **{c['from_sent_p50_s']:.3f} s** | {c['from_sent_p95_s']:.3f} s | {c['from_returned_p50_s']:.3f} s "
            f"| {c['from_returned_p95_s']:.3f} s | {c['evaluation_ms_p50'] / 1000:.3f} s: {load:.3f} s, {lat:.3f} s, "
            f"{c['evaluation_ms_p50'] / 1000 - lat:.3f} s |")
    idle, cands, bulk = daemon["host_idle"], daemon["after_candidates"], daemon["after_bulk"]
    add(f"\nMemory: the host (`/status` RSS; PSS; private) idle {idle['rss_mib']} MiB, after the candidates "
        f"{cands['host_rss_mib']} MiB ({cands.get('host_pss_mib')}; {cands.get('host_private_mib')}), after bulk scoring "
        f"{bulk['host_rss_mib']} MiB ({bulk.get('host_pss_mib')}; {bulk.get('host_private_mib')}).\n")
    add("| model | loaded: RSS / private | peak while scoring: RSS / private | after: RSS / PSS / private | evaluation (store) |")
    add("|---|---|---|---|---|")
    after = {m["model"]: m for m in bulk["models"]}
    for label in ("LR", "RF"):
        x = daemon[f"bulk_{label}"]
        m = next((v for k, v in after.items() if k.startswith(f"Bulk{label}")), {})
        ev = x["evaluation"]
        add(f"| Bulk{label} | {x['first_seen'].get('rss_mib')} / {x['first_seen'].get('private_mib')} MiB "
            f"| {x['peak_rss_mib']} / {x['peak_private_mib']} MiB | {m.get('rss_mib')} / {m.get('pss_mib')} / {m.get('private_mib')} MiB "
            f"| {ev['duration_ms'] / 1000:.2f} s, requests {ev['serving']['requests_ms'] / 1000:.2f} s "
            f"(model process {ev['serving']['host_python_ms'] / 1000:.2f} s), load {ev['serving']['startup_ms'] / 1000:.2f} s |")
    for m in bulk["models"]:
        if m["model"].startswith("Daemon"):
            add(f"| {m['model']} v{m['version']} (full policy, warm) | | | {m['rss_mib']} / {m.get('pss_mib')} / {m.get('private_mib')} MiB | |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--stagegate", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rf-rows", type=int, default=1_000_000)
    ap.add_argument("--lat-requests", type=int, default=1000)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--skip-cold", action="store_true", help="only the daemon (section 5)")
    ap.add_argument("--skip-daemon", action="store_true", help="only the cold evaluations (sections 1-4)")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds between two daemon candidates")
    ap.add_argument("--fidelity-only", action="store_true", help="only the latency fidelity (section 3), --rounds rounds")
    ap.add_argument("--json", help="write every figure here too")
    ap.add_argument("--work", help="a directory for fixtures and configs (default: a new temporary one)")
    a = ap.parse_args()
    a.stagegate = os.path.abspath(a.stagegate)
    b = Bench(a)
    load_before = os.getloadavg()

    def save(runs, daemon):
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"runs": runs, "daemon": daemon, "loadavg": [load_before, os.getloadavg()]}, f, indent=1, default=str)

    b.log("fixtures…")
    bulk = bulk_fixtures(b)
    if a.fidelity_only:
        a.skip_daemon = True
        runs = fidelity_only(b, a.rounds, bulk)
    else:
        runs = None if a.skip_cold else dataset_and_full(b, a.rounds, bulk)
    save(runs, None)
    daemon = None if a.skip_daemon else daemon_section(b, a.candidates, bulk)
    save(runs, daemon)
    load_after = os.getloadavg()
    print(summary(runs, daemon, a))
    print(f"\nload average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}")


if __name__ == "__main__":
    main()
