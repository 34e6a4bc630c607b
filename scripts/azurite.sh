#!/usr/bin/env bash
# Azurite, Microsoft's Azure Storage emulator, for the tests of holdouts in Azure Blob Storage
# (tests/suite/common/azure.rs): installed from npm once into the cache beside the venvs, keyed
# by its version, and reused. Installs Debian's nodejs and npm first when npm is missing.
# Prints nothing on stdout but the path of its azurite-blob (so callers can
# AZURITE=$(scripts/azurite.sh)).
set -euo pipefail
version=3.37.0
cache=${STAGEGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stagegate}
dir="$cache/azurite-$version"
if [ ! -f "$dir/.complete" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "azurite: installing Debian packages: nodejs npm" >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2 && $SUDO apt-get install -y -qq nodejs npm >&2
  fi
  echo "azurite: installing Azurite $version from npm into $dir (about a minute)" >&2
  rm -rf "$dir"
  mkdir -p "$dir"
  npm install --silent --no-audit --no-fund --prefix "$dir" "azurite@$version" >&2
  touch "$dir/.complete"
fi
echo "$dir/node_modules/.bin/azurite-blob"
