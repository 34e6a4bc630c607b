#!/usr/bin/env bash
# Installs everything the demo, tests and benchmarks need, idempotently:
#   - the Python venv (pinned mlflow, scikit-learn…), cached outside the clone and keyed by
#     the hash of requirements.txt, so reruns take a second;
#     `scripts/setup.sh requirements-mlflow2.txt` makes the venv of that file instead (the
#     MLflow 2 compatibility test's), cached the same way;
#   - Debian packages the benchmarks, the browser test and the PostgreSQL tests use
#     (STAGEGATE_APT_PACKAGES), when apt is available and they are missing.
# Prints nothing on stdout but the venv path (so callers can VENV=$(scripts/setup.sh)).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
req=${1:-requirements.txt}
case "$req" in /*) ;; *) req="$root/$req" ;; esac
[ -f "$req" ] || { echo "setup: no requirements file $req" >&2; exit 2; }
hash=$(sha256sum "$req" | cut -c1-12)
cache=${STAGEGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stagegate}
venv="$cache/venv-$hash"
if [ ! -f "$venv/.complete" ]; then
  echo "setup: creating Python venv $venv from $(basename "$req") (about a minute)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip >&2
  "$venv/bin/pip" install --quiet -r "$req" >&2
  touch "$venv/.complete"
fi
# Debian packages (tools for benchmarks and tests). Missing ones are installed when possible.
if [ "${STAGEGATE_SKIP_APT:-}" != 1 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  for pkg in ${STAGEGATE_APT_PACKAGES:-}; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    # Packages with a service (postgresql) need no policy-rc.d here: in a container
    # invoke-rc.d already denies the start (Debian's images ship a policy-rc.d; without one it
    # blocks when there is no init or no runlevel), and under systemd the postinst ignores a
    # failed start. Tests never use the system's cluster anyway.
    $SUDO apt-get update -qq >&2 && $SUDO apt-get install -y -qq "${missing[@]}" >&2
  fi
fi
echo "$venv"
