'use strict';
// Builds the counters addon at install time. A failed build must not fail the
// install: the package then runs on its JavaScript fallback and says so once
// at runtime (see src/bindings.ts). Set ERGOMETER_COUNTERS_REQUIRE_NATIVE=1
// (as our CI does) to turn a failed build into a failed install.
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const fs = require('node:fs');

// npm tells install scripts where its bundled node-gyp is; when run by hand,
// look beside the npm that ships with this Node.js.
function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'),
  ];
  return candidates.find((file) => file && fs.existsSync(file));
}

// Build against the headers installed beside this Node.js when npm was not
// told otherwise: node-gyp would download them, which fails offline.
function nodeDirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return fs.existsSync(path.join(prefix, 'include/node/node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

const nodeGyp = findNodeGyp();
const gypArgs = ['rebuild', ...nodeDirArgs()];
const cwd = path.join(__dirname, '..');
const result = nodeGyp
  ? spawnSync(process.execPath, [nodeGyp, ...gypArgs], { cwd, stdio: 'inherit' })
  : spawnSync('node-gyp', gypArgs, { cwd, stdio: 'inherit', shell: true });
if (result.status !== 0) {
  const message =
    '@ergometer/counters: the native addon did not build; CPU cost will be measured with the ' +
    'JavaScript fallback (process.cpuUsage), which is coarser and process-wide.';
  if (process.env.ERGOMETER_COUNTERS_REQUIRE_NATIVE === '1') {
    console.error(message);
    process.exit(result.status ?? 1);
  }
  console.warn(message);
}
