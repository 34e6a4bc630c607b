#!/usr/bin/env bash
# The fuzzing campaign (issue 8): every cargo-fuzz target for EXECUTIONS executions each
# (default 10,000,000), one target at a time on one core, from the seed corpus. Prints per
# target the executions, exec/s, crashes, timeouts, out-of-memory, corpus and coverage, and
# exits non-zero on any finding. Figures go in docs/benchmarks.md.
# Usage: bench/fuzz.sh [EXECUTIONS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10000000}
shift $(( $# > 0 ? 1 : 0 ))
exec fuzz/run.sh --runs "$runs" "$@"
