import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { ErgometerError } from '../../src/errors';
import { detectCommit, resolveOptions } from '../../src/options';

const base = { ERGOMETER_SERVICE: 'api', ERGOMETER_COLLECTOR: 'file:./x.ndjson', ERGOMETER_COMMIT: 'c1' };

function rejects(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ErgometerError, String(error));
    assert.equal(error.code, 'ERGOMETER_BAD_OPTION');
    for (const pattern of patterns) assert.match(error.message, pattern);
    return true;
  });
}

test('every option comes from its environment variable, and an explicit option wins', () => {
  const env = {
    ...base,
    ERGOMETER_TOKEN: 't',
    ERGOMETER_SAMPLE_RATE: '0.25',
    ERGOMETER_ENDPOINT_SAMPLE_RATES: 'GET /health=0, GET /feed/:id=0.5',
    ERGOMETER_REGION: 'eu-1',
    ERGOMETER_HOST: 'web-7',
    ERGOMETER_COUNTER: 'thread-cputime',
    ERGOMETER_FLUSH_INTERVAL_MS: '500',
    ERGOMETER_MAX_BATCH_SAMPLES: '10',
    ERGOMETER_MAX_QUEUED_SAMPLES: '100',
    ERGOMETER_SAMPLE_WINDOW_MS: '20',
  };
  const fromEnv = resolveOptions({}, env);
  assert.deepEqual(
    { ...fromEnv, endpointSampleRates: Object.fromEntries(fromEnv.endpointSampleRates) },
    {
      service: 'api',
      collector: 'file:./x.ndjson',
      token: 't',
      sampleRate: 0.25,
      endpointSampleRates: { 'GET /health': 0, 'GET /feed/:id': 0.5 },
      commit: 'c1',
      region: 'eu-1',
      host: 'web-7',
      counter: 'thread-cputime',
      flushIntervalMs: 500,
      maxBatchSamples: 10,
      maxQueuedSamples: 100,
      sampleWindowMs: 20,
    },
  );
  const explicit = resolveOptions({ service: 'other', sampleRate: 1, host: 'h', commit: 'c2' }, env);
  assert.equal(explicit.service, 'other');
  assert.equal(explicit.sampleRate, 1);
  assert.equal(explicit.host, 'h');
  assert.equal(explicit.commit, 'c2');
});

test('defaults', () => {
  const o = resolveOptions({}, base);
  assert.equal(o.sampleRate, 0.01);
  assert.equal(o.host, os.hostname());
  assert.equal(o.region, '');
  assert.equal(o.counter, 'auto');
  assert.equal(o.endpointSampleRates.size, 0);
});

test('missing service or collector names the option and its variable', () => {
  rejects(() => resolveOptions({}, { ERGOMETER_COLLECTOR: 'file:x' }), /service \(ERGOMETER_SERVICE\)/, /required/);
  rejects(() => resolveOptions({}, { ERGOMETER_SERVICE: 'api' }), /collector \(ERGOMETER_COLLECTOR\)/);
});

test('bad values are refused, naming the value', () => {
  rejects(() => resolveOptions({}, { ...base, ERGOMETER_SAMPLE_RATE: 'abc' }), /ERGOMETER_SAMPLE_RATE/, /"abc"/);
  rejects(() => resolveOptions({ sampleRate: 1.5 }, base), /sampleRate/, /1\.5/);
  rejects(() => resolveOptions({ sampleRate: -0.1 }, base), /-0\.1/);
  rejects(() => resolveOptions({ sampleRate: Number.NaN }, base), /NaN/);
  rejects(
    () => resolveOptions({}, { ...base, ERGOMETER_FLUSH_INTERVAL_MS: '1.5' }),
    /ERGOMETER_FLUSH_INTERVAL_MS/,
    /integer/,
  );
  rejects(() => resolveOptions({ service: 'a\nb' }, base), /control characters/);
  rejects(() => resolveOptions({ host: 'x'.repeat(201) }, base), /longer than 200/);
  rejects(() => resolveOptions({}, { ...base, ERGOMETER_ENDPOINT_SAMPLE_RATES: 'GET /a' }), /ENDPOINT=RATE/);
  rejects(() => resolveOptions({ endpointSampleRates: { 'GET /a': 2 } }, base), /endpointSampleRates\["GET \/a"\]/);
  rejects(() => resolveOptions({}, { ...base, ERGOMETER_COUNTER: 'cycles' }), /ERGOMETER_COUNTER/, /cycles/);
  rejects(() => resolveOptions(null as unknown as object, base), /takes an object/);
});

test('property: a rate is accepted exactly when it is a number in [0, 1]', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.double().map(String), fc.double({ min: 0, max: 1 }).map(String)), (text) => {
      const n = text.trim() === '' ? Number.NaN : Number(text);
      const valid = Number.isFinite(n) && n >= 0 && n <= 1;
      try {
        const o = resolveOptions({}, { ...base, ERGOMETER_SAMPLE_RATE: text });
        return valid ? o.sampleRate === n : text === '';
      } catch (error) {
        return !valid && error instanceof ErgometerError && error.code === 'ERGOMETER_BAD_OPTION';
      }
    }),
  );
});

test('commit: ERGOMETER_COMMIT, then CI variables in order, then git, then unknown', () => {
  assert.equal(detectCommit({ ERGOMETER_COMMIT: 'a', GITHUB_SHA: 'b' }), 'a');
  assert.equal(detectCommit({ GITHUB_SHA: 'b', CI_COMMIT_SHA: 'c' }), 'b');
  assert.equal(detectCommit({ CI_COMMIT_SHA: 'c', GIT_COMMIT: 'd' }), 'c');
  assert.equal(detectCommit({ HEROKU_SLUG_COMMIT: 'h' }), 'h');

  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-git-'));
  try {
    const git = (...args: string[]) =>
      spawnSync('git', ['-c', 'user.email=t@t', '-c', 'user.name=t', ...args], { cwd: dir, encoding: 'utf8' });
    const detectIn = (cwd: string) =>
      spawnSync(
        process.execPath,
        [
          '-e',
          `process.stdout.write(require(${JSON.stringify(require.resolve('../../src/options'))}).detectCommit({}))`,
        ],
        { cwd, encoding: 'utf8' },
      ).stdout;
    assert.equal(detectIn(dir), 'unknown');
    git('init', '-q');
    git('commit', '-q', '--allow-empty', '-m', 'one');
    const head = git('rev-parse', 'HEAD').stdout.trim();
    assert.match(head, /^[0-9a-f]{40}$/);
    assert.equal(detectIn(dir), head);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
