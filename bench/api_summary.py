"""Summary of a bench/api.sh run, from schemathesis's JSON report (and its ndjson event log,
for the status codes the daemon answered). Exits 1 on any failure.

    python api_summary.py REPORT_DIR DURATION_MS SCHEMATHESIS_EXIT DAEMON_ALIVE(0|1)
"""
import collections
import json
import os
import sys

# schemathesis failure codes (schemathesis/failure_codes.py): a 5xx, and a response that
# breaks the schema (undocumented status or content type, body not matching, bad JSON).
SERVER_ERRORS = {"ST101", "ST102"}
SCHEMA_VIOLATIONS = {"ST103", "ST104", "ST105", "ST106", "ST107", "ST108", "ST109", "ST110", "ST111"}


def statuses(path):
    """Status codes of every response in the ndjson event log, counted."""
    counts = collections.Counter()
    if not os.path.exists(path):
        return counts

    def walk(node):
        if isinstance(node, dict):
            resp = node.get("response")
            if isinstance(resp, dict) and isinstance(resp.get("status_code"), int):
                counts[resp["status_code"]] += 1
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    with open(path) as f:
        for line in f:
            walk(json.loads(line))
    return counts


def main():
    report_dir, duration, rc, alive = sys.argv[1], int(sys.argv[2]) / 1000.0, int(sys.argv[3]), sys.argv[4] == "1"
    path = os.path.join(report_dir, "schemathesis.json")
    if not os.path.exists(path):
        print(f"api: no schemathesis report (exit {rc})", file=sys.stderr)
        return 1
    with open(path) as f:
        doc = json.load(f)
    ops = doc.get("operations") or {}
    cases = doc["test_cases"]
    server = sum(g["count"] for g in doc["failures"] if g["code"] in SERVER_ERRORS)
    schema = sum(g["count"] for g in doc["failures"] if g["code"] in SCHEMA_VIOLATIONS)
    other = [g for g in doc["failures"] if g["code"] not in SERVER_ERRORS | SCHEMA_VIOLATIONS]
    codes = statuses(os.path.join(report_dir, "events.ndjson"))
    print()
    print("API conformance (schemathesis %s, --checks all)" % doc["schemathesis_version"])
    print(f"  operations tested     {ops.get('tested')} of {ops.get('total')} (errored {ops.get('errored')}, skipped {ops.get('skipped')})")
    print(f"  test cases generated  {cases['generated']}")
    if codes:
        print(f"  responses             {sum(codes.values())}: " + ", ".join(f"{c}x{n}" for c, n in sorted(codes.items())))
    print(f"  server errors         {server}")
    print(f"  schema violations     {schema}")
    print(f"  other check failures  {sum(g['count'] for g in other)}")
    for g in doc["failures"]:
        print(f"    {g['code']} {g['title']} x{g['count']}: {', '.join(g['operations'])}")
    for kind, ops_warned in (doc.get("warnings") or {}).items():
        if ops_warned:
            print(f"  warning: {kind}: {', '.join(map(str, ops_warned))}")
    for e in doc["errors"]:
        print(f"  error: {e['title']} x{e['count']}")
    print(f"  duration              {duration:.1f} s (schemathesis {doc['running_time']:.1f} s, stop: {doc['stop_reason']})")
    print(f"  daemon after the run  {'alive, no panic' if alive else 'DOWN or panicked'}")
    ok = rc == 0 and alive and not doc["failures"] and not doc["errors"] and doc["complete"]
    print("  result                " + ("PASS" if ok else f"FAIL (schemathesis exit {rc})"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
