#!/usr/bin/env bash
# Build stagegate as it was at REV, for a benchmark's before/after: a detached worktree in
# WORK/before, built in its own target directory beside ours (seeded with our release
# dependencies, so only stagegate itself builds; kept for the next run). Prints the binary,
# copied to WORK/stagegate-before. The caller removes the worktree (`git worktree remove`).
# Usage: bench/baseline.sh REV WORK
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rev=${1:?REV}; work=${2:?WORK}
target=$(scripts/target-dir.sh)
echo "== building the baseline ($rev)" >&2
git worktree add --detach --quiet "$work/before" "$rev"
[ -d "$target/bench-baseline/release" ] || { mkdir -p "$target/bench-baseline" && cp -a "$target/release" "$target/bench-baseline/" 2>/dev/null || true; }
(cd "$work/before" && CARGO_TARGET_DIR=$target/bench-baseline cargo build --release --quiet --bin stagegate)
cp "$target/bench-baseline/release/stagegate" "$work/stagegate-before"
echo "$work/stagegate-before"
