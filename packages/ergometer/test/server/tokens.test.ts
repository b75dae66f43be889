import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { TokenSet } from '../../src/server/auth';
import { resolveTokens, splitTokens, tokenFileFor } from '../../src/server/token-file';

test('TokenSet accepts each listed token as a Bearer credential and nothing else', () => {
  const tokens = new TokenSet(['alpha', 'beta-longer-token']);
  assert.equal(tokens.allows('Bearer alpha'), true);
  assert.equal(tokens.allows('bearer beta-longer-token'), true);
  assert.equal(tokens.allows('Bearer alph'), false);
  assert.equal(tokens.allows('Bearer alphaa'), false);
  assert.equal(tokens.allows('alpha'), false);
  assert.equal(tokens.allows('Basic alpha'), false);
  assert.equal(tokens.allows('Bearer '), false);
  assert.equal(tokens.allows(undefined), false);
  assert.throws(() => new TokenSet(['', '']), /at least one non-empty token/);
});

test('splitTokens and tokenFileFor', () => {
  assert.deepEqual(splitTokens(' a, b ,,c '), ['a', 'b', 'c']);
  assert.deepEqual(splitTokens(undefined), []);
  assert.equal(tokenFileFor('/data/ergometer.duckdb'), '/data/ergometer.tokens.json');
  assert.equal(tokenFileFor('/data/x'), '/data/x.tokens.json');
});

test('missing tokens are generated into a 0600 file, reused on restart, and given ones win', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ergometer-tokens-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'ergometer.tokens.json');

  const first = await resolveTokens({ ingestTokens: [], readTokens: [], file });
  assert.equal(first.generated, true);
  assert.equal(first.file, file);
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.match(first.ingestTokens[0] ?? '', /^erg_ingest_[A-Za-z0-9_-]{43}$/);
  assert.match(first.readTokens[0] ?? '', /^erg_read_[A-Za-z0-9_-]{43}$/);
  assert.notEqual(first.ingestTokens[0], first.readTokens[0]);

  const again = await resolveTokens({ ingestTokens: [], readTokens: [], file });
  assert.equal(again.generated, false);
  assert.deepEqual(again.ingestTokens, first.ingestTokens);
  assert.deepEqual(again.readTokens, first.readTokens);

  const mixed = await resolveTokens({ ingestTokens: ['given'], readTokens: [], file });
  assert.deepEqual(mixed.ingestTokens, ['given']);
  assert.deepEqual(mixed.readTokens, first.readTokens);

  const both = await resolveTokens({ ingestTokens: ['i'], readTokens: ['r'], file: path.join(dir, 'unused.json') });
  assert.equal(both.file, null);
  await assert.rejects(stat(path.join(dir, 'unused.json')), { code: 'ENOENT' });
  assert.doesNotMatch(await readFile(file, 'utf8'), /given/);
});

test('a token file readable by others, or not a token file, is refused with what to do', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ergometer-tokens-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 't.json');
  await writeFile(file, JSON.stringify({ ingestTokens: ['a'], readTokens: ['b'] }));
  await chmod(file, 0o644);
  await assert.rejects(resolveTokens({ ingestTokens: [], readTokens: [], file }), {
    code: 'ERGOMETER_TOKEN_FILE_MODE',
    message: /chmod 600/,
  });
  await chmod(file, 0o600);
  await writeFile(file, '{"ingestTokens": []}');
  await assert.rejects(resolveTokens({ ingestTokens: [], readTokens: [], file }), {
    code: 'ERGOMETER_TOKEN_FILE_INVALID',
  });
});
