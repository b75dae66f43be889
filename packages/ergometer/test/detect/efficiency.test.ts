/**
 * The efficiency figure (cost per active user at the peak minute) on a real DuckDB file, checked
 * against the same arithmetic done here from the batches that were written.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import {
  addUserHash,
  createUsersSketch,
  encodeUsersSketch,
  estimateDistinctUsers,
} from '@ergometer/agent/users-sketch';
import { efficiencyByDay } from '../../src/detect/efficiency';
import { openDuckDbStore } from '../../src/store/duckdb/store';
import type { IngestBatch } from '../../src/store/types';
import { scenarioBatches } from './scenario';

const DAY = 86_400_000;
const MINUTE = 60_000;
const DAY0 = Date.UTC(2026, 10, 20);

function sketchOf(users: number, offset: number) {
  const sketch = createUsersSketch();
  for (let u = 0; u < users; u++)
    addUserHash(
      sketch,
      createHash('sha256')
        .update(`user-${offset + u}`)
        .digest(),
    );
  return sketch;
}

it('cost per active user: the peak minute’s requests priced at each endpoint’s mean of the day, over its users', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ergometer-efficiency-'));
  const store = openDuckDbStore({ path: path.join(dir, 'ergometer.duckdb') });
  t.after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await store.init();
  const endpoints = { 'GET /feed/:id': 1_000_000, 'GET /search': 3_000_000 };
  const batches: IngestBatch[] = scenarioBatches(
    'shop',
    [{ commit: 'c1', from: DAY0, to: DAY0 + 6 * 3_600_000, endpoints, perHour: 2000, shareB: 0 }],
    7,
  );
  // Users and every request's count, on the batches' own minutes: three minutes, the second the peak.
  const minutes = [DAY0 + 60 * MINUTE, DAY0 + 61 * MINUTE, DAY0 + 62 * MINUTE];
  const usersPerMinute = [300, 900, 500];
  const requests = { 'GET /feed/:id': 5000, 'GET /search': 1200 };
  const first = batches[0] as IngestBatch;
  first.users = minutes.map((minute, i) => ({
    minute,
    sketch: encodeUsersSketch(sketchOf(usersPerMinute[i] ?? 0, i * 10_000)),
  }));
  first.counts = minutes.flatMap((minute) =>
    Object.entries(requests).map(([endpoint, n]) => ({ minute, endpoint, requests: n })),
  );
  for (const batch of batches) await store.ingest(batch);

  // The day's mean cost per request of each endpoint, from the samples that were written.
  const mean = new Map<string, number>();
  for (const endpoint of Object.keys(endpoints)) {
    const costs = batches.flatMap((b) => b.samples.filter((s) => s.endpoint === endpoint).map((s) => s.cost));
    mean.set(endpoint, costs.reduce((a, b) => a + b, 0) / costs.length);
  }
  const peakUsers = estimateDistinctUsers(sketchOf(900, 10_000));
  const expectedCost = Object.entries(requests).reduce((sum, [e, n]) => sum + n * (mean.get(e) ?? 0), 0);

  const [day] = await efficiencyByDay(store, 'shop', { from: DAY0, to: DAY0 + DAY });
  assert.ok(day);
  assert.equal(day.peakMinute, minutes[1]);
  assert.equal(day.activeUsers, Math.round(peakUsers));
  assert.equal(day.requests, 5000 + 1200);
  assert.ok(Math.abs(day.cost / expectedCost - 1) < 1e-9, `${day.cost} vs ${expectedCost}`);
  assert.ok(Math.abs(day.costPerUser / (expectedCost / peakUsers) - 1) < 1e-9);
  assert.equal(day.metric, 'cpu_ns');
});
