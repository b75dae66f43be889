/**
 * One version, generated once and checked against package.json (STYLE.md):
 * the agent sends it in every batch, so a release with a stale constant would
 * mislabel all its data.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { AGENT_VERSION } from '../../src/version';

// Compiled to packages/agent/dist/test/unit/: the package root is three folders up.
const packageJson = path.join(__dirname, '..', '..', '..', 'package.json');

test('AGENT_VERSION is the version in packages/agent/package.json', () => {
  const pkg = JSON.parse(readFileSync(packageJson, 'utf8')) as { name: string; version: string };
  assert.equal(pkg.name, '@ergometer/agent', `read the wrong package.json: ${packageJson}`);
  assert.equal(AGENT_VERSION, pkg.version);
});

test('AGENT_VERSION is a semantic version', () => {
  assert.match(AGENT_VERSION, /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/);
});
