import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { resolveLimits } from '../../src/ingest/limits';
import { validateBatch } from '../../src/ingest/validate';
import { scheduleRetention } from '../../src/server/retention';
import { openDuckDbStore } from '../../src/store/duckdb/store';
import type { RetentionResult } from '../../src/store/types';
import { wireBatch } from '../ingest/support';

const DAY_MS = 86_400_000;

test('scheduled retention deletes raw samples past the policy, repeats, and logs a failed pass', {
  timeout: 60_000,
}, async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ergometer-retention-'));
  const store = openDuckDbStore({ path: path.join(dir, 'r.duckdb'), threads: 1 });
  let stop: () => void = () => undefined;
  t.after(async () => {
    stop();
    await store.close().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  await store.init();
  const now = Date.now();
  const limits = resolveLimits();
  const old = now - 20 * DAY_MS;
  await store.ingest(validateBatch(wireBatch(7, { now: old }), limits, old));
  await store.ingest(validateBatch(wireBatch(5, { now }), limits, now));
  assert.equal(await store.sampleCount(), 12);

  const passes: RetentionResult[] = [];
  const logs: string[] = [];
  stop = scheduleRetention(
    store,
    { samplesDays: 14, aggregatesDays: 400, profilesDays: 30 },
    { firstDelayMs: 0, intervalMs: 30, log: (m) => logs.push(m), onPass: (r) => passes.push(r) },
  );
  while (passes.length < 2) await new Promise((r) => setTimeout(r, 10));
  assert.equal(passes[0]?.samplesDeleted, 7);
  assert.equal(passes[1]?.samplesDeleted, 0);
  assert.equal(await store.sampleCount(), 5);
  assert.match(logs[0] ?? '', /retention deleted 7 samples/);

  await store.close();
  while (!logs.some((m) => m.startsWith('retention failed'))) await new Promise((r) => setTimeout(r, 10));
  stop();
});
