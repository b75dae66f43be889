import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { resolveDetectorConfig } from '../../src/detect/config';
import { runDetectors } from '../../src/detect/run';
import { openClickHouseStore } from '../../src/store/clickhouse/index';
import { openDuckDbStore } from '../../src/store/duckdb/store';
import type { Store } from '../../src/store/types';
import { type SingleClickHouse, startClickHouse } from '../support/clickhouse';
import { NOW, storyPhases, writeScenario } from './scenario';

/** The detectors read only the Store contract: the same data must give the same alerts on both backends. */
describe('the same alerts on DuckDB and on ClickHouse', () => {
  let dir: string;
  let clickhouse: SingleClickHouse;
  const stores: Store[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'ergometer-detect-backends-'));
    clickhouse = await startClickHouse();
    const duck = openDuckDbStore({ path: path.join(dir, 'ergometer.duckdb') });
    const ch = openClickHouseStore({ url: clickhouse.url, database: 'detect_backends' });
    for (const store of [duck, ch]) {
      await store.init();
      await writeScenario(store, 'shop', storyPhases(), 1);
      stores.push(store);
    }
  });
  after(async () => {
    for (const store of stores) await store.close().catch(() => undefined);
    await clickhouse?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('rollout and flag alerts: same ids, same numbers', async () => {
    const config = resolveDetectorConfig();
    const [duck, ch] = await Promise.all(stores.map((store) => runDetectors(store, config, { now: NOW })));
    assert.ok(duck && ch);
    assert.equal(duck.tested, ch.tested);
    assert.ok(duck.alerts.length >= 2);
    assert.deepEqual(
      ch.alerts.map((a) => [a.id, a.kind, a.endpoint, a.resolvedBy ?? null, a.n]),
      duck.alerts.map((a) => [a.id, a.kind, a.endpoint, a.resolvedBy ?? null, a.n]),
    );
    duck.alerts.forEach((a, i) => {
      const b = ch.alerts[i];
      assert.ok(b);
      for (const [x, y] of [
        [a.changePct, b.changePct],
        [a.ci[0], b.ci[0]],
        [a.ci[1], b.ci[1]],
        [a.pValueRaw, b.pValueRaw],
      ] as const) {
        assert.ok(Math.abs(x - y) <= 1e-9 * Math.max(1, Math.abs(x)), `${a.id}: ${x} vs ${y}`);
      }
    });
  });
});
