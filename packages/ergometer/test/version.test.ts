import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { VERSION } from '../src/version';

const packageDir = path.join(__dirname, '..', '..');

test('VERSION matches package.json', () => {
  const pkg = JSON.parse(readFileSync(path.join(packageDir, 'package.json'), 'utf8')) as { version: string };
  assert.equal(VERSION, pkg.version);
});

test('the CLI prints its version and rejects unknown commands with usage', () => {
  const cli = path.join(packageDir, 'dist', 'src', 'cli', 'main.js');
  const version = spawnSync(process.execPath, [cli, 'version'], { encoding: 'utf8' });
  assert.equal(version.status, 0);
  assert.equal(version.stdout.trim(), VERSION);
  const unknown = spawnSync(process.execPath, [cli, 'frobnicate'], { encoding: 'utf8' });
  assert.equal(unknown.status, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
  assert.match(unknown.stderr, /Usage: ergometer/);
});

// Regression: the README's `npm run demo` pointed at dist/cli/main.js, which tsc never writes.
test('the root package.json demo script runs the built CLI', () => {
  const root = path.join(packageDir, '..', '..');
  const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: { demo: string } };
  const match = /node (\S+) demo$/.exec(pkg.scripts.demo);
  assert.ok(match, `unexpected demo script: ${pkg.scripts.demo}`);
  // --help: the demo itself runs for minutes and then serves until Ctrl-C (test/demo runs it whole).
  const demo = spawnSync(process.execPath, [path.join(root, match[1]!), 'demo', '--help'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(demo.status, 0, demo.stderr);
  assert.match(demo.stdout, /^Usage: ergometer demo/);
});
