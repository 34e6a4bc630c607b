#!/usr/bin/env bash
# Print cargo's target directory: honours CARGO_TARGET_DIR, .cargo/config and workspaces, so
# scripts find the binaries they build in any cargo setup.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --no-deps --offline 2>/dev/null \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
