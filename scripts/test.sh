#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this and nothing else):
# set up the Python venvs (the project's, and MLflow 2.22's for the compatibility test), check
# formatting and lints, start a real MLflow server on a free loopback port, run every Rust
# test against it (the daemon's tests twice: on SQLite, then on PostgreSQL), and stop the
# server by PID at the end.
set -euo pipefail

# Root, checked before anything is set up. The suite needs it twice: to install Debian's
# chromium and postgresql with apt-get when they are missing, and, whatever is installed, for
# tests/suite/hardening.rs to mount a small tmpfs (the disk that fills up), which only root may do.
# So a user without root stops here, with the reason, rather than at that test much later.
if [ "$(id -u)" != 0 ]; then
  missing=""
  for pkg in chromium postgresql; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=" $pkg"
  done
  {
    echo "test.sh: run the test suite as root (as CI does), e.g. sudo bash scripts/test.sh, or in"
    echo "  a Debian container. It mounts a tmpfs (tests/suite/hardening.rs fills a small disk), which"
    echo "  needs root even with everything installed."
    if [ -n "$missing" ]; then
      echo "  It also installs the Debian packages${missing} with apt-get (missing here: the browser"
      echo "  test and the PostgreSQL tests need them)."
    fi
  } >&2
  exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Debian's Chromium for the status page's browser test (tests/suite/status_page), PostgreSQL's
# server for the throwaway clusters of tests/suite/common/postgres.rs, and Prometheus for the
# post-promotion analysis tests (tests/suite/common/prometheus.rs), when missing.
export STAGEGATE_APT_PACKAGES="chromium postgresql prometheus ${STAGEGATE_APT_PACKAGES:-}"
# (Assigned, then exported: `export X=$(…)` would hide a failed setup from `set -e`.)
STAGEGATE_VENV=$(scripts/setup.sh)
# MLflow 2.22's own venv for tests/suite/compat_mlflow2.rs (which fails without it). A clean machine
# spends about two minutes installing it once; afterwards it is cached like the first.
STAGEGATE_MLFLOW2_VENV=$(scripts/setup.sh requirements-mlflow2.txt)
export STAGEGATE_VENV STAGEGATE_MLFLOW2_VENV
# Azurite, the Azure Storage emulator, for the tests of holdouts in Azure Blob Storage.
STAGEGATE_AZURITE=$(scripts/azurite.sh)
export STAGEGATE_AZURITE
# Debian's package puts prometheus on PATH; the tests start their own, never the service.
if STAGEGATE_PROMETHEUS=$(command -v prometheus); then export STAGEGATE_PROMETHEUS; fi
# Debian keeps initdb and pg_ctl off PATH: point the tests at them (scripts/postgres.sh looks
# where tests/suite/common/postgres.rs would). If none is found the PostgreSQL tests say so.
if STAGEGATE_PG_BIN=$(scripts/postgres.sh bindir); then export STAGEGATE_PG_BIN; fi
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# MLflow 3's usage telemetry: nothing may leave the machine, and its thread rewrites os.environ
# while a multithreaded fixture iterates it (KeyError: '_MLFLOW_TELEMETRY_SESSION_ID').
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true

echo "== format" >&2
cargo fmt --all -- --check

# Lints while building, not in a pass of their own: clippy-driver compiles the project's own
# crates (RUSTC_WORKSPACE_WRAPPER, as `cargo clippy` does, with its lint arguments in
# CLIPPY_ARGS as cargo-clippy passes them), with warnings denied, and builds them instead of only
# checking them. The dependencies are then compiled once, where `cargo clippy` then `cargo
# build` compiled them twice (once to check, once to build): about two minutes of a CI run.
# Exported, so the test runs below reuse this build. Every target is linted: the library, the
# binary, the tests and the examples (benchmark tools).
RUSTC_WORKSPACE_WRAPPER=$(command -v clippy-driver || echo "$(rustc --print sysroot)/bin/clippy-driver")
export RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
echo "== build, with clippy's lints" >&2
cargo build --lib --bins --tests --examples --quiet

work=$(mktemp -d -t stagegate-test.XXXXXX)
# mktemp makes it 0700, but as root the PostgreSQL tests run the server as the postgres user,
# which must pass through it to its cluster (search only: it still cannot list it).
chmod 711 "$work"
cleanup() {
  local rc=$?
  # A red run keeps what MLflow said about webhook deliveries: the usual cause of a test
  # waiting in vain for an event.
  if [ "$rc" != 0 ] && [ -f "$work/mlflow/server.log" ]; then
    echo "== MLflow: $(grep -c 'Failed to send webhook' "$work/mlflow/server.log" || true) webhook deliveries failed; the last lines of its log:" >&2
    tail -n 15 "$work/mlflow/server.log" | cut -c1-300 >&2
  fi
  scripts/mlflow-server.sh stop "$work/mlflow" || true
  if [ -n "${fixtures_pid:-}" ]; then kill -TERM -- "-$fixtures_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# The fixture server (tests/fixtures/server.py), which the tests ask to train and register
# models: it imports mlflow and scikit-learn once and forks per call, where a Python started per
# call spent seconds of CPU importing them, hundreds of times a run. Its own process group,
# stopped by PID at the end; its imports overlap MLflow's start.
export STAGEGATE_TEST_FIXTURES=$work/fixtures.sock
setsid "$STAGEGATE_VENV/bin/python" tests/fixtures/server.py "$STAGEGATE_TEST_FIXTURES" \
  >"$work/fixtures.log" 2>&1 </dev/null &
fixtures_pid=$!
echo "== starting MLflow $("$STAGEGATE_VENV/bin/python" -c 'import mlflow; print(mlflow.__version__)')" >&2
# A 1 s webhook cache: each test registers its own webhook and expects events at once.
# 64 delivery threads instead of MLflow's 10: every event goes to every test's webhook, and a
# delivery to a daemon a test has just killed holds a thread for its three retries (about
# 8 s). With 10, a churn test's burst against a killed daemon delays every other test's events
# by minutes (seen in CI: three daemon tests timed out with no webhook received).
export STAGEGATE_TEST_MLFLOW_URI=$(MLFLOW_WEBHOOK_CACHE_TTL=1 MLFLOW_WEBHOOK_DELIVERY_MAX_WORKERS=64 \
  scripts/mlflow-server.sh start "$work/mlflow")
export STAGEGATE_TEST_TMP=$work
echo "   at $STAGEGATE_TEST_MLFLOW_URI" >&2
for _ in $(seq 1200); do
  [ -S "$STAGEGATE_TEST_FIXTURES" ] && break
  kill -0 "$fixtures_pid" 2>/dev/null || { echo "the fixture server exited; its log:" >&2; cat "$work/fixtures.log" >&2; exit 1; }
  sleep 0.1
done
[ -S "$STAGEGATE_TEST_FIXTURES" ] || { echo "the fixture server did not listen within 120 s; its log:" >&2; cat "$work/fixtures.log" >&2; exit 1; }
echo "== fixture server at $STAGEGATE_TEST_FIXTURES" >&2

run_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --no-fail-fast --failure-output final "$@"
  else
    cargo test --no-fail-fast "$@"
  fi
}

# The daemon's tests once more with every daemon's state in its own PostgreSQL database
# (tests/suite/common/daemon.rs): the store is a seam, and both backends must pass them. Only for a
# whole run (arguments select tests of the first pass). The two passes run side by side, which
# on two cores ends sooner than one after the other (the tests wait on MLflow, fixtures and
# daemons in turn); the second pass's output follows the first's.
pg_pass() {
  # The integration tests are one binary (tests/suite); a test's name starts with its module.
  # The modules whose daemons keep state. Left to the first pass: the browser (status_page),
  # MLflow 2's API (compat_mlflow2), Databricks' signatures and the deploy manifests, whose
  # subjects the store does not see.
  local daemon_modules="daemon approval churn operations races hardening"
  # The full-disk test's subject is the SQLite file: it runs on SQLite whatever the pass, so
  # here it would only repeat itself.
  local sqlite_only="hardening::a_full_disk_gives_a_clear_error_corrupts_nothing_and_work_resumes_with_space"
  # Churn cases that differ from one kept here only in how the daemon hears of changes (the
  # poll alone) or in its worker count, or that another contains (the kill -9 case is the
  # alias-and-webhooks case plus a restart from the store; the archive case is the
  # stage-and-webhooks case plus archiving): on the first pass only.
  # The twenty-models case is scale, which the first pass measures; leases and the queue on
  # this store are the subject of the other daemon cases here.
  local first_pass_only="churn::churn_stage_poll_only churn::churn_alias_poll_only churn::churn_alias_webhooks_one_worker
    churn::churn_stage_webhooks churn::churn_alias_webhooks
    daemon::twenty_models_of_three_versions_each_end_with_their_newest_passing_version_promoted"
  if cargo nextest --version >/dev/null 2>&1; then
    # Whole modules of daemon tests, and the daemon tests of the others.
    local filter
    filter=$(printf 'test(/^%s::/) | ' $daemon_modules)
    filter+="test(=served::daemon_shutdown_abandons_an_evaluation_and_stops_its_serving)"
    filter="(binary(=suite) & ($filter)) - test(=$sqlite_only)"
    filter+=$(printf ' - test(=%s)' $first_pass_only)
    STAGEGATE_TEST_STORE=postgres run_tests --lib --bins --tests -E "$filter"
  else
    STAGEGATE_TEST_STORE=postgres run_tests --test suite -- $(printf -- '%s:: ' $daemon_modules) --skip "$sqlite_only" \
      $(printf -- '--skip %s ' $first_pass_only)
  fi
}
pg_pid=
if [ $# -eq 0 ]; then
  (set +e; pg_pass >"$work/postgres-pass.log" 2>&1; echo $? >"$work/postgres-pass.status") &
  pg_pid=$!
fi

echo "== tests (daemons on SQLite)" >&2
status=0
run_tests --lib --bins --tests "$@" || status=$?
if [ -n "$pg_pid" ]; then
  wait "$pg_pid" || true
  echo "== the daemon tests again, on PostgreSQL (run beside the first pass)" >&2
  cat "$work/postgres-pass.log"
  pg_status=$(cat "$work/postgres-pass.status" 2>/dev/null || echo 1)
  [ "$pg_status" = 0 ] || status=$pg_status
fi
exit $status
