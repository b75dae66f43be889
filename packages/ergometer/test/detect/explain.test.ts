/**
 * explainRollout: what the rollout test said at each look, so that a rollout that raised no alert
 * (the demo's `--exit` check prints it) says which condition it missed — significance or threshold.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type DetectorConfig, resolveDetectorConfig } from '../../src/detect/config';
import { explainRollout, explanationLines } from '../../src/detect/explain';
import { detectRollouts } from '../../src/detect/rollout';
import { runDetectors } from '../../src/detect/run';
import { learnThresholds } from '../../src/detect/thresholds';
import type { Store } from '../../src/store/types';
import { HOUR, NOW, storyStoreForSuite, T0 } from './scenario';

const FEED = 'GET /feed/:id';

/** The explanation's lines, as the demo and the CLI print them. */
async function explainRolloutLooks(
  ...args: [Store, string, string, string, DetectorConfig, number]
): Promise<string[]> {
  return explanationLines(await explainRollout(...args));
}

/** The signed change, in %, each line reports. */
function changes(lines: readonly string[]): number[] {
  return lines.map((line) => Number((/after the rollout against v1: ([+-][\d.]+)%/.exec(line) as RegExpExecArray)[1]));
}

describe('explainRollout on the story (v2 makes the feed 6% dearer: a canary, then alone)', () => {
  const suite = storyStoreForSuite('ergometer-explain-');

  it('gives each look: method, change, p-value against the share of alpha it may spend, threshold', async () => {
    const config = resolveDetectorConfig({ minEffectPct: 3 });
    const lines = await explainRolloutLooks(suite.store, 'shop', 'v2', FEED, config, NOW);
    assert.ok(lines.length >= 2, lines.join('\n'));
    assert.ok(
      lines.some((l) => l.startsWith('canary look')),
      lines.join('\n'),
    );
    for (const change of changes(lines)) assert.ok(change > 2 && change < 10, lines.join('\n'));
    // Interim looks spend 2% of alpha each, the final one 90%.
    assert.match(lines[0] as string, /÷ 2% of alpha/);
    assert.match(lines[lines.length - 1] as string, /÷ 90% of alpha/);
    for (const line of lines) assert.match(line, /95% CI .*threshold 3% \(default\)/);
    assert.match(lines[lines.length - 1] as string, /→ meets both conditions$/);
    // The detectors did alert on it: the lines describe the same test.
    const alerts = (await runDetectors(suite.store, config, { now: NOW, service: 'shop' })).alerts;
    assert.ok(alerts.some((a) => a.kind === 'rollout' && a.endpoint === FEED && a.candidate.commit === 'v2'));
  });

  it('names the threshold that held an alert back', async () => {
    const config = resolveDetectorConfig({ thresholds: { shop: { [FEED]: 10 } }, confidence: 0.99 });
    const alerts = (await runDetectors(suite.store, config, { now: NOW, service: 'shop' })).alerts;
    assert.ok(!alerts.some((a) => a.kind === 'rollout' && a.endpoint === FEED && a.candidate.commit === 'v2'));
    const lines = await explainRolloutLooks(suite.store, 'shop', 'v2', FEED, config, NOW);
    assert.ok(lines.length >= 2, lines.join('\n'));
    for (const line of lines)
      assert.match(line, /99% CI .*threshold 10% \(config\) → (not significant, )?below the threshold$/);
    for (const change of changes(lines)) assert.ok(change < 10, lines.join('\n'));
  });

  it('reads one endpoint of one rollout only, and finds what the whole run finds there', async () => {
    const config = resolveDetectorConfig({});
    // v2 rolls out at T0 + 3 h beside v1: a look inside its canary, one past it (checked by the canary), the last.
    for (const at of [T0 + 3.6 * HOUR, T0 + 5.1 * HOUR, NOW]) {
      const whole = (await detectRollouts(suite.store, 'shop', at, config)).filter(
        (t) => t.candidate.commit === 'v2' && t.comparison.endpoint === FEED,
      );
      assert.equal(whole.length, 1, `one comparison of the feed at ${new Date(at).toISOString()}`);
      const focused = await detectRollouts(suite.store, 'shop', at, config, undefined, {
        commit: 'v2',
        endpoint: FEED,
      });
      assert.deepEqual(focused, whole);
      assert.deepEqual(
        await learnThresholds(suite.store, 'shop', at, config, FEED),
        new Map([...(await learnThresholds(suite.store, 'shop', at, config))].filter(([e]) => e === FEED)),
      );
    }
  });

  it('says so when there is nothing to explain', async () => {
    const config = resolveDetectorConfig({});
    assert.deepEqual(await explainRolloutLooks(suite.store, 'shop', 'v9', FEED, config, NOW), [
      'no sample of commit v9 in the store',
    ]);
    assert.deepEqual(await explainRolloutLooks(suite.store, 'shop', 'v1', FEED, config, NOW), [
      'v1 is the first commit of shop in the store: there is no earlier one to compare it with',
    ]);
    const early = await explainRolloutLooks(suite.store, 'shop', 'v2', 'GET /nowhere', config, NOW);
    assert.match(early[0] as string, /^no look compared GET \/nowhere yet/);
  });
});
