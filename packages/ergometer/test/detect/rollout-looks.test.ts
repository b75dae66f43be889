import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { resolveDetectorConfig } from '../../src/detect/config';
import { detectRollouts, INTERIM_ALPHA_SHARE, INTERIM_LOOKS, rolloutLook } from '../../src/detect/rollout';
import { openDuckDbStore } from '../../src/store/duckdb/store';
import { BASE, HOUR, T0, writeScenario } from './scenario';

const WINDOW = 6 * HOUR;

describe('rollout looks (sequential test)', () => {
  it('looks at window/32 … window/2, then at the full window; nothing before the first look', () => {
    assert.equal(rolloutLook(WINDOW / 32 - 1, WINDOW), undefined);
    const lengths = new Set<number>();
    for (let elapsed = 0; elapsed <= 2 * WINDOW; elapsed += 60_000) {
      const look = rolloutLook(elapsed, WINDOW);
      if (!look) continue;
      assert.ok(look.lengthMs <= elapsed, 'never looks at data that cannot have arrived');
      lengths.add(look.lengthMs);
    }
    assert.deepEqual(
      [...lengths].sort((a, b) => a - b),
      [WINDOW / 32, WINDOW / 16, WINDOW / 8, WINDOW / 4, WINDOW / 2, WINDOW],
    );
    assert.deepEqual(rolloutLook(WINDOW, WINDOW), {
      lengthMs: WINDOW,
      final: true,
      alphaShare: 1 - INTERIM_ALPHA_SHARE,
    });
  });

  it('a comparison whose data stopped early has its final look where it stopped', () => {
    assert.deepEqual(rolloutLook(2 * HOUR, WINDOW, HOUR), {
      lengthMs: HOUR,
      final: true,
      alphaShare: 1 - INTERIM_ALPHA_SHARE,
    });
    // Still running at 50 min: the interim look at 45 min.
    assert.equal(rolloutLook(50 * 60_000, WINDOW)?.lengthMs, WINDOW / 8);
  });

  it('the alpha of all looks of one rollout adds up to at most alpha (Bonferroni over looks)', () => {
    const shares = new Map<number, number>();
    for (let elapsed = 0; elapsed <= WINDOW; elapsed += 60_000) {
      const look = rolloutLook(elapsed, WINDOW);
      if (look) shares.set(look.lengthMs, look.alphaShare);
    }
    const total = [...shares.values()].reduce((a, b) => a + b, 0);
    assert.equal(shares.size, INTERIM_LOOKS + 1);
    assert.ok(total <= 1 + 1e-12, `total share ${total}`);
  });

  // Regression: detectors run every minute in `serve` compared the data up to "now" each time, at
  // full alpha, so a no-change rollout had hundreds of chances to alert (measured: 2.35 false
  // alerts per 1000 comparisons watched every 10 min for 6 h instead of 0.5).
  it('a rollout watched every 10 minutes on a real store is compared at most 6 times, on windows that end in the past', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ergometer-looks-'));
    const store = openDuckDbStore({ path: path.join(dir, 'ergometer.duckdb') });
    try {
      await store.init();
      await writeScenario(
        store,
        'looks',
        [
          { commit: 'a', from: T0 - 6 * HOUR, to: T0, endpoints: BASE, perHour: 3000, shareB: 0 },
          { commit: 'b', from: T0, to: T0 + 8 * HOUR, endpoints: BASE, perHour: 3000, shareB: 0 },
        ],
        9,
      );
      const config = resolveDetectorConfig();
      const windows = new Set<string>();
      for (let now = T0; now <= T0 + 8 * HOUR; now += 10 * 60_000) {
        for (const t of await detectRollouts(store, 'looks', now, config)) {
          assert.ok((t.candidate.to as number) <= now + 1, 'the window ends at a look time already passed');
          windows.add(`${t.candidate.from}-${t.candidate.to}-${t.alphaShare}`);
        }
      }
      // 49 runs, 6 distinct comparisons: the looks at 11.25 min … 3 h and the final one at 6 h.
      assert.equal(windows.size, INTERIM_LOOKS + 1, [...windows].join('\n'));
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
