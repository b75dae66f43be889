/**
 * The profile diff, root cause and function detector read only the Store contract: the same
 * traffic (request samples and real pprof files) must give the same answers on a DuckDB file and
 * on a real ClickHouse server (test/support/clickhouse.ts).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveDetectorConfig } from '../../src/detect/config';
import { runDetectors } from '../../src/detect/run';
import { decodeProfile, summarizeProfile } from '../../src/profile/decode';
import { profileDiff } from '../../src/profile/diff';
import { openClickHouseStore } from '../../src/store/clickhouse/index';
import { openDuckDbStore } from '../../src/store/duckdb/store';
import type { Store } from '../../src/store/types';
import { type SingleClickHouse, startClickHouse } from '../support/clickhouse';
import { ENDPOINT, simulateVersion, V1_WORK, type Version } from './app-sim';

const HOUR = 3_600_000;
const NOW = Date.UTC(2026, 10, 20, 12);
const T0 = NOW - 12 * HOUR;
const VERSIONS: Version[] = [
  { commit: 'v1', work: V1_WORK, from: T0, to: T0 + 6 * HOUR, requests: 20_000, profiles: 8 },
  {
    commit: 'v2',
    work: { ...V1_WORK, renderFeed: (V1_WORK.renderFeed as number) + 30_000 },
    from: T0 + 6 * HOUR,
    to: NOW,
    requests: 20_000,
    profiles: 8,
  },
];

function close(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a));
}

describe('profiles: the same diff, root cause and function alerts on DuckDB and on ClickHouse', () => {
  let dir: string;
  let clickhouse: SingleClickHouse | undefined;
  const stores: Store[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'ergometer-profile-backends-'));
    clickhouse = await startClickHouse();
    const duck = openDuckDbStore({ path: path.join(dir, 'ergometer.duckdb') });
    const ch = openClickHouseStore({ url: clickhouse.url, database: 'profile_backends' });
    for (const store of [duck, ch]) {
      stores.push(store);
      await store.init();
      for (const [i, v] of VERSIONS.entries()) {
        const traffic = simulateVersion('feed', v, 90 + i);
        for (const batch of traffic.batches) await store.ingest(batch);
        for (const p of traffic.profiles) {
          await store.storeProfile(
            { service: 'feed', commit: v.commit, host: 'web-1', metric: 'cpu_ns', from: p.from, to: p.to },
            p.pprof,
            p.to,
            summarizeProfile(decodeProfile(p.pprof, 'cpu_ns')),
          );
        }
      }
    }
  });
  after(async () => {
    for (const store of stores) await store.close().catch(() => undefined);
    await clickhouse?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('diff and alerts agree', async () => {
    const [duck, ch] = stores as [Store, Store];
    const query = { service: 'feed', endpoint: ENDPOINT, base: { commit: 'v1' }, head: { commit: 'v2' } };
    const [a, b] = await Promise.all([profileDiff(duck, query), profileDiff(ch, query)]);
    assert.equal(a.functions[0]?.function, 'renderFeed');
    assert.deepEqual(
      b.functions.map((f) => [f.function, f.file, f.line]),
      a.functions.map((f) => [f.function, f.file, f.line]),
    );
    a.functions.forEach((f, i) => {
      const g = b.functions[i];
      assert.ok(g && close(f.deltaSelf, g.deltaSelf) && close(f.deltaTotal, g.deltaTotal), f.function);
    });
    assert.ok(close(a.flame.head, b.flame.head));
    assert.deepEqual(
      b.flame.children.map((c) => c.name),
      a.flame.children.map((c) => c.name),
    );

    const config = resolveDetectorConfig();
    const [ra, rb] = await Promise.all([
      runDetectors(duck, config, { now: NOW, service: 'feed' }),
      runDetectors(ch, config, { now: NOW, service: 'feed' }),
    ]);
    const summary = (alerts: typeof ra.alerts) =>
      alerts.map((x) => [x.id, x.kind, x.rootCause.map((r) => r.function).join(',')]);
    assert.deepEqual(summary(rb.alerts), summary(ra.alerts));
    const rollout = ra.alerts.find((x) => x.kind === 'rollout');
    assert.equal(rollout?.rootCause[0]?.function, 'renderFeed');
    assert.deepEqual(
      ra.alerts.filter((x) => x.kind === 'function').map((x) => x.rootCause[0]?.function),
      ['renderFeed'],
    );
  });
});
