import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { AGENT_VERSION } from '../../src/version';

test('AGENT_VERSION is the version in package.json', () => {
  const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  assert.equal(AGENT_VERSION, pkg.version);
});
