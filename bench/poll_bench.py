"""Poll cost with nothing to do, for two stagegate binaries on the same registry (run via
bench/poll.sh): the build before the inputs fingerprint (issue 7) and the current one.

Steady states, N registered models each (a policy with one `tags` gate; on_bypass ignore):
  listing: one version per model, no candidate: the poll is the listing calls alone;
  kept:    per model v1 in Production and v2 in Staging, failed (a tag missing) and kept.
           The listing shows every version number, so nothing can hide behind v2.
  kept-gap: per model v1 and v2 (no stage) and v3 in Staging, failed and kept. v1 is not
           the newest of any stage: the current build's poll also runs its search for older
           kept candidates behind a failed newest one; the old build never looks for them.
The kept states are reached by letting the current daemon converge first. Each figure is the
median of 8 polls (`/status` last_duration_ms, polling every second), against the bare listing
calls (`registered-models/search`, 1,000 a page, fresh connections, median of 8); each
build is measured `--rounds` times, alternating, and the medians are reported.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from daemon_bench import Daemon, bare_listing, get_json, poll_duration, rest  # noqa: E402

EVERY_SECOND = "* * * * * *"
POLICY = """
[[policies]]
name = "poll-bench"
models = ["{prefix}*"]
candidate = {{ stage = "Staging" }}
promote = {{ stage = "Production", archive_existing = true }}
on_bypass = "ignore"

  [[policies.gates]]
  name = "metadata"
  type = "tags"
  required = ["owner"]
"""


def make(uri, prefix, n, state):
    for i in range(n):
        name = f"{prefix}{i:04d}"
        rest(uri, "POST", "registered-models/create", {"name": name})

        def version(stage=None):
            status, body = rest(uri, "POST", "model-versions/create", {"name": name, "source": "s3://bench/model", "run_id": ""})
            v = json.loads(body)["model_version"]["version"]
            if stage:
                rest(uri, "POST", "model-versions/transition-stage", {"name": name, "version": v, "stage": stage, "archive_existing_versions": False})

        if state == "listing":
            version()
        elif state == "kept":
            version("Production")
            version("Staging")
        else:  # kept-gap: v1 is not the newest of any stage, so the listing cannot show it
            version()
            version()
            version("Staging")


def converge(sg, uri, work, prefix, n):
    """Let the current daemon judge every candidate (v2 fails: no `owner` tag, and is kept)."""
    d = Daemon(sg, uri, os.path.join(work, f"converge-{prefix}"), [], EVERY_SECOND, POLICY.format(prefix=prefix))
    deadline = time.time() + 900
    while time.time() < deadline:
        s = get_json(d.url + "/status")
        if s["totals"]["evaluations"] >= n and s["queue"]["depth"] == 0 and s["queue"]["in_flight"] == 0:
            break
        time.sleep(1)
    else:
        raise SystemExit("the daemon did not converge")
    d.stop()


def measure(sg, uri, work, prefix, label):
    d = Daemon(sg, uri, os.path.join(work, f"{label}-{prefix}"), [], EVERY_SECOND, POLICY.format(prefix=prefix))
    ms, matched = poll_duration(d)
    enqueued = get_json(d.url + "/status")["poll"].get("last_enqueued")
    d.stop()
    return {"poll_ms": ms, "models": matched, "last_enqueued": enqueued}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--before", required=True, help="stagegate binary before issue 7")
    ap.add_argument("--after", required=True, help="the current stagegate binary")
    ap.add_argument("--models", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sg-poll-bench-")
    out = []
    for state in ("listing", "kept", "kept-gap"):
        prefix = f"poll-{state}-"
        print(f"{state}: registering {a.models} models…", file=sys.stderr)
        make(a.uri, prefix, a.models, state)
        if state != "listing":
            print("kept: converging…", file=sys.stderr)
            converge(a.after, a.uri, work, prefix, a.models)
        # Alternate the two builds (and the bare listing) over several rounds: the machine's
        # and MLflow's own noise then falls on both alike.
        polls = {"before": [], "after": []}
        bares = []
        for r in range(a.rounds):
            bares.append(bare_listing(a.uri))
            for label, sg in (("before", a.before), ("after", a.after)):
                polls[label].append(measure(sg, a.uri, work, prefix, f"{label}{r}")["poll_ms"])
        bare = statistics.median(bares)
        row = {"state": state, "models": a.models, "bare_listing_ms": round(bare, 1)}
        for label, ms in polls.items():
            row[f"{label}_ms"] = statistics.median(ms)
            row[f"{label}_ratio"] = round(statistics.median(ms) / bare, 2)
        row["after_over_before"] = round(row["after_ms"] / row["before_ms"], 2)
        out.append(row)
        print(json.dumps(row), file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
