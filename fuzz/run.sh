#!/usr/bin/env bash
# The fuzzing engine behind bench/fuzz.sh (the campaign) and scripts/fuzz-smoke.sh (CI):
# installs cargo-fuzz into a cache outside the clone if it is missing, builds every target
# once, runs each for a number of executions or seconds from a fresh scratch corpus seeded
# with fuzz/corpus/<target>, prints one line per target, and exits 1 on any finding.
#
# Usage: fuzz/run.sh (--runs N | --seconds S) [TARGET...]     (default: every target)
# Environment: STAGEGATE_CACHE (default ~/.cache/stagegate), STAGEGATE_FUZZ_TARGET_DIR
# (default $STAGEGATE_CACHE/fuzz-target), FUZZ_TIMEOUT (seconds per input, default 10),
# FUZZ_RSS_MB (default 2048).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

limit=
case "${1:-}" in
  --runs) limit="-runs=$2" ;;
  --seconds) limit="-max_total_time=$2" ;;
  *) echo "usage: $0 (--runs N | --seconds S) [TARGET...]" >&2; exit 2 ;;
esac
shift 2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(webhook config mlmodel edge_cases dataset)

version=0.13.2
cache=${STAGEGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stagegate}
tool="$cache/cargo-fuzz-$version"
if [ ! -x "$tool/bin/cargo-fuzz" ]; then
  echo "fuzz: installing cargo-fuzz $version into $tool (once; about 2 minutes)" >&2
  cargo install cargo-fuzz --version "$version" --locked --quiet --root "$tool" >&2
fi
export PATH="$tool/bin:$PATH"
# cargo-fuzz passes nightly-only flags (-Z…) to rustc; this lets the stable toolchain take them.
export RUSTC_BOOTSTRAP=1
# Builds live in the cache too, so CI's fresh clone reuses them: a cold build of arrow and
# parquet with libFuzzer's instrumentation costs about 15 CPU-minutes, a warm one seconds.
target_dir=${STAGEGATE_FUZZ_TARGET_DIR:-$cache/fuzz-target}

# No sanitizer: stagegate's own code is safe Rust, where an out-of-bounds access is already a
# panic; what we hunt is panics, overflow (debug assertions are on), hangs and runaway memory,
# and ASan would halve the executions per second. Built once for all targets.
echo "fuzz: building the targets (release, debug assertions) in $target_dir" >&2
cargo fuzz build --sanitizer none --target-dir "$target_dir" >&2
bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"

timeout=${FUZZ_TIMEOUT:-10}
status=0
printf '%-11s %12s %9s %8s %9s %5s %13s %6s %8s\n' target executions exec/s crashes timeouts ooms corpus cov seconds
for t in "${targets[@]}"; do
  work="$target_dir/work/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  start=$(date +%s)
  # The scratch corpus comes first: libFuzzer writes new inputs only into the first
  # directory, so the seeds in the repository are read, never changed. No -jobs: with it
  # libFuzzer forks and logs to ./fuzz-N.log; without, it is one process on one core.
  rc=0
  "$bin_dir/$t" "$work/corpus" "fuzz/corpus/$t" "$limit" -timeout="$timeout" \
    -rss_limit_mb="${FUZZ_RSS_MB:-2048}" -artifact_prefix="$work/artifacts/" \
    -print_final_stats=1 >"$work/log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - start ))
  stat() { sed -n "s/^stat::$1: *//p" "$work/log" | tail -1; }
  execs=$(stat number_of_executed_units); rate=$(stat average_exec_per_sec)
  count() { find "$work/artifacts" -name "$1-*" | wc -l; }
  crashes=$(count crash); timeouts=$(count timeout); ooms=$(count oom)
  # libFuzzer's last status line: `corp: <units>/<bytes>` and `cov: <edges>`.
  corpus=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$work/log" | tail -1 | cut -d' ' -f2)
  cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1 | cut -d' ' -f2)
  printf '%-11s %12s %9s %8s %9s %5s %13s %6s %8s\n' "$t" "${execs:-?}" "${rate:-?}" \
    "$crashes" "$timeouts" "$ooms" "${corpus:-?}" "${cov:-?}" "$secs"
  if [ "$rc" != 0 ] || [ $((crashes + timeouts + ooms)) -gt 0 ]; then
    status=1
    echo "fuzz: $t FOUND SOMETHING (exit $rc); log: $work/log" >&2
    grep -E "^(==[0-9]+== ERROR|thread .* panicked|SUMMARY|ALARM)" "$work/log" | head -5 >&2 || true
    for a in "$work"/artifacts/*; do
      [ -e "$a" ] && echo "  reproduce: $bin_dir/$t $a" >&2
    done
  fi
done
exit $status
