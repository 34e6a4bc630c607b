"""Benchmark of issue 11 (several replicas on one PostgreSQL), on one local MLflow server and
one throwaway PostgreSQL cluster. Run via bench/replicas.sh.

1. seam: SQLite, one replica — webhook throughput (as fast as 32 connections allow) and
   latency percentiles, this build against BASELINE (the last build before the store seam),
   each run twice, alternating, on fresh daemons.
2. PostgreSQL, one replica and three: the same burst (three loaders at once, one per replica,
   for three), every delivery recorded once; then webhook -> promoted for N alias candidates
   with every replica's MLflow webhook registered (each event reaches every replica), from
   the delivery's arrival and from the alias write.
3. failover: three replicas, lease L, a candidate whose command gate runs SLOW seconds; the
   replica holding the model's lease is killed with -9 mid-gate, K times. Reported: kill ->
   another replica holds the lease (takeover), and kill -> promoted; target takeover < 2 L.
   The killed replica is started again after each round.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from daemon_bench import SECRET, Daemon, fixture, get_json, make_models, pct, practice_wall, rest  # noqa: E402
from evaluate_bench import GATES  # noqa: E402

TAGS = {"accuracy": "0.9", "training_dataset_version": "v1", "feature_schema_version": "1"}


def policy(slow=None):
    gate = ""
    if slow:
        gate = f"""
  [[policies.gates]]
  name = "suite"
  type = "command"
  run = ["sleep", "{slow}"]
"""
    return f"""
[[policies]]
name = "bench"
models = ["load-*", "lat-*", "fo-*"]
candidate = {{ alias = "challenger" }}
promote = {{ alias = "champion" }}
{GATES}{gate}
"""


class Pg:
    def __init__(self, work):
        self.dir = os.path.join(work, "pg")
        self.url = subprocess.run([os.path.join(HERE, "..", "scripts", "postgres.sh"), "start", self.dir],
                                  check=True, capture_output=True, text=True).stdout.strip()

    def q(self, sql):
        out = subprocess.run(["psql", self.url, "-XAt", "-c", sql], check=True, capture_output=True, text=True).stdout
        return [line.split("|") for line in out.strip().splitlines() if line]

    def stop(self):
        subprocess.run([os.path.join(HERE, "..", "scripts", "postgres.sh"), "stop", self.dir], check=False)


def replica(a, work, name, url=None, lease=None, slow=None, schedule="0 0 0 1 1 *"):
    env = {}
    if url:
        env["STAGEGATE_STATE__URL"] = url
    if lease:
        env["STAGEGATE_STATE__LEASE"] = lease
    old = dict(os.environ)
    os.environ.update(env)
    try:
        return Daemon(a.stagegate, a.uri, os.path.join(work, name), None, schedule, policy=policy(slow))
    finally:
        os.environ.clear()
        os.environ.update(old)


def burst(a, daemons, n):
    """n deliveries split over the replicas, sent at once; throughput over the slowest."""
    lat = [tempfile.mktemp(prefix="sg-lat-") for _ in daemons]
    t0 = time.time()
    procs = [subprocess.Popen([a.load, d.url + "/webhooks/mlflow", SECRET, str(n // len(daemons)), "32", "load-", "100"],
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ, LOAD_LATENCIES=f))
             for d, f in zip(daemons, lat)]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    wall = time.time() - t0
    us = []
    for f in lat:
        with open(f) as fh:
            us.extend(int(x) for x in fh if x.strip())
        os.unlink(f)
    sent = sum(r["sent"] for r in results)
    return {"replicas": len(daemons), "sent": sent, "ok": sum(r["ok"] for r in results),
            "per_second": round(sent / max(r["seconds"] for r in results), 0), "wall_s": round(wall, 2),
            "p50_ms": round(pct(us, 0.5) / 1000, 2), "p99_ms": round(pct(us, 0.99) / 1000, 2),
            "max_ms": round(max(us) / 1000, 2)}


def seam(a, work, n):
    rows = []
    for round_ in range(2):
        for label, sg in (("baseline", a.baseline), ("this build", a.stagegate)):
            if not sg:
                continue
            d = Daemon(sg, a.uri, os.path.join(work, f"seam-{label.replace(' ', '')}-{round_}"), None, "0 0 0 1 1 *", policy=policy())
            time.sleep(1)
            r = burst(a, [d], n)
            with d.db() as db:
                r["recorded"] = db.execute("SELECT COUNT(*) FROM deliveries WHERE id LIKE 'load-%'").fetchone()[0]
            d.stop()
            r["build"] = label
            rows.append(r)
            print(f"seam: {label}: {r}", file=sys.stderr)
    return rows


def on_postgres(a, work, pg, count, n):
    ds = [replica(a, work, f"pg{count}-{i}", url=pg.url) for i in range(count)]
    time.sleep(1)
    before = int(pg.q("SELECT COUNT(*) FROM deliveries")[0][0])
    r = burst(a, ds, n)
    time.sleep(1)
    r["recorded"] = int(pg.q("SELECT COUNT(*) FROM deliveries")[0][0]) - before
    for d in ds:
        d.stop()
    return r


def latency(a, work, pg, count, n):
    ds = [replica(a, work, f"lat{count}-{i}", url=pg.url) for i in range(count)]
    names = []
    for i, d in enumerate(ds):
        name = f"bench-{count}-{i}-{int(time.time())}"
        said = subprocess.run([a.stagegate, "webhook", "register", "--url", d.url + "/webhooks/mlflow", "--name", name,
                               "--config", os.path.join(d.dir, "stagegate.toml")], check=True, capture_output=True,
                              text=True, env=dict(os.environ, MLFLOW_TRACKING_URI=a.uri)).stdout
        names.append((d, said.split("(")[1].split(")")[0]))
    time.sleep(2)  # the server's webhook cache
    stamp = int(time.time())
    ops = [{"op": "register", "name": f"lat-{count}-{stamp}-{i:03d}", "alias": "challenger", "tags": TAGS, "light": True,
            "metrics": {"val_accuracy": 0.9, "val_f1": 0.9}, "pause_after": 1.0} for i in range(n)]
    set_at = {r["name"]: r["at"] for r in fixture(a.python, a.uri, ops)}
    deadline = time.time() + 180
    like = f"lat-{count}-{stamp}-%"
    while time.time() < deadline:
        done = int(pg.q(f"SELECT COUNT(DISTINCT model) FROM audit WHERE action = 'promoted' AND model LIKE '{like}'")[0][0])
        if done >= n:
            break
        time.sleep(0.2)
    from_delivery, from_alias, promotions = [], [], 0
    for name, at in set_at.items():
        prom = pg.q(f"SELECT MIN(at), COUNT(*) FROM audit WHERE action = 'promoted' AND model = '{name}'")[0]
        got = pg.q(f"SELECT MIN(received_at) FROM deliveries WHERE model = '{name}' AND event = 'model_version_alias.created'")[0]
        if not prom[0]:
            raise SystemExit(f"{name} was not promoted")
        promotions += int(prom[1])
        from_alias.append(int(prom[0]) / 1000.0 - at)
        if got[0]:
            from_delivery.append((int(prom[0]) - int(got[0])) / 1000.0)
    for d, hook in names:
        rest(a.uri, "DELETE", f"webhooks/{hook}")
        d.stop()
    return {"replicas": count, "candidates": n, "promotions": promotions,
            "webhook_to_promoted_p50_s": round(pct(from_delivery, 0.5), 3), "webhook_to_promoted_p95_s": round(pct(from_delivery, 0.95), 3),
            "alias_set_to_promoted_p50_s": round(pct(from_alias, 0.5), 3)}


def failover(a, work, pg, kills, lease_s, slow):
    lease = f"{lease_s}s"
    ds = [replica(a, work, f"fo-{i}", url=pg.url, lease=lease, slow=slow, schedule="* * * * * *") for i in range(3)]
    takeovers, promoted_after = [], []
    for k in range(kills):
        name = f"fo-{int(time.time())}-{k}"
        fixture(a.python, a.uri, [{"op": "register", "name": name, "alias": "challenger", "tags": TAGS, "light": True,
                                   "metrics": {"val_accuracy": 0.9, "val_f1": 0.9}}])
        ids = {get_json(d.url + "/status")["replica"]["id"]: i for i, d in enumerate(ds)}
        holder, deadline = None, time.time() + 60
        while holder is None and time.time() < deadline:
            row = pg.q(f"SELECT owner, token FROM leases WHERE kind = 'model' AND name = '{name}' "
                       f"AND expires_at > (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint")
            if row and row[0][0] in ids:
                holder, token = row[0][0], int(row[0][1])
            else:
                time.sleep(0.05)
        if holder is None:
            raise SystemExit(f"{name}: no replica took the model")
        time.sleep(min(1.0, slow / 3))  # mid-gate
        victim = ids[holder]
        ds[victim].proc.send_signal(signal.SIGKILL)
        killed = time.time()
        ds[victim].proc.wait()
        took = None
        while time.time() < killed + 10 * lease_s:
            if took is None:
                row = pg.q(f"SELECT owner FROM leases WHERE kind = 'model' AND name = '{name}' AND token > {token}")
                if row and row[0][0] != holder:
                    took = time.time() - killed
            if int(pg.q(f"SELECT COUNT(*) FROM audit WHERE action = 'promoted' AND model = '{name}'")[0][0]) >= 1:
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"{name}: not promoted after the kill")
        done = time.time() - killed
        if took is None:
            took = done
        takeovers.append(took)
        promoted_after.append(done)
        count = int(pg.q(f"SELECT COUNT(*) FROM audit WHERE action = 'promoted' AND model = '{name}'")[0][0])
        print(f"failover {k + 1}/{kills}: takeover {took:.2f} s, promoted {done:.2f} s after the kill, promotions {count}",
              file=sys.stderr)
        if count != 1:
            raise SystemExit(f"{name}: promoted {count} times")
        ds[victim] = replica(a, work, f"fo-{victim}-{k}", url=pg.url, lease=lease, slow=slow, schedule="* * * * * *")
    for d in ds:
        d.stop()
    return {"kills": kills, "lease_s": lease_s, "gate_s": slow,
            "takeover_p50_s": round(pct(takeovers, 0.5), 2), "takeover_max_s": round(max(takeovers), 2),
            "kill_to_promoted_p50_s": round(pct(promoted_after, 0.5), 2), "kill_to_promoted_max_s": round(max(promoted_after), 2),
            "takeover_p50_over_lease": round(pct(takeovers, 0.5) / lease_s, 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--stagegate", required=True)
    ap.add_argument("--baseline")
    ap.add_argument("--load", required=True)
    ap.add_argument("--deliveries", type=int, default=9000)
    ap.add_argument("--candidates", type=int, default=20)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--lease", type=int, default=3)
    ap.add_argument("--slow", type=int, default=4)
    ap.add_argument("--only", choices=["seam", "postgres"], help="run one part only")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sg-replicas-bench-")
    os.chmod(work, 0o711)
    make_models(a.uri, "load-", 0, 100)
    out = {}
    if a.only != "postgres":
        out["seam"] = seam(a, work, a.deliveries)
    if a.only == "seam":
        print(json.dumps(out, indent=2))
        return
    pg = Pg(work)
    try:
        out["postgres_burst"] = [on_postgres(a, work, pg, c, a.deliveries) for c in (1, 3)]
        print(f"burst: {out['postgres_burst']}", file=sys.stderr)
        out["latency"] = [latency(a, work, pg, c, a.candidates) for c in (1, 3)]
        # The practice stagegate replaces (examples/pytest-gates), on the same server: its
        # pytest gates, then promote_model.py — what a candidate waits for when CI runs them
        # after training.
        out["practice_s"] = round(practice_wall(a.python, a.uri, 3), 3)
        print(f"latency: {out['latency']}", file=sys.stderr)
        out["failover"] = failover(a, work, pg, a.kills, a.lease, a.slow)
    finally:
        pg.stop()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
