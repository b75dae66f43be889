/**
 * The verdict `ergometer demo --exit` gives (src/demo/expectations.ts): exactly the story's alerts, and
 * the profiler's function alerts that explain them, but no function alert on an endpoint a commit did
 * not touch.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AlertRecord } from '../../src/alerts/state';
import {
  checkDemoAlerts,
  DEMO_COMMITS,
  DEMO_FLAG,
  DEMO_SERVICE,
  FLAGGED_ENDPOINT,
  REGRESSED_ENDPOINT,
  REGRESSED_FUNCTION,
} from '../../src/demo/expectations';
import type { Alert } from '../../src/detect/alert';
import { alertFixture } from '../support/alerts';

function record(alert: Partial<Alert> & Pick<Alert, 'kind' | 'endpoint'>): AlertRecord {
  const full = alertFixture({
    service: DEMO_SERVICE,
    baseline: { commit: DEMO_COMMITS.v1 },
    candidate: { commit: DEMO_COMMITS.v2 },
    rootCause: [{ function: REGRESSED_FUNCTION, file: 'service.js', line: 1, deltaPct: 20 }],
    ...alert,
  });
  return { alert: full, status: 'open', firstSeen: 0, lastSeen: 0, resolvedAt: null };
}

const rollout = record({ kind: 'rollout', endpoint: REGRESSED_ENDPOINT });
const flag = record({
  kind: 'flag',
  endpoint: FLAGGED_ENDPOINT,
  baseline: { commit: DEMO_COMMITS.v3 },
  candidate: { commit: DEMO_COMMITS.v3 },
  flag: { key: DEMO_FLAG.key, variant: DEMO_FLAG.variant, control: 'off' },
  comparison: 'flag-variants',
  rootCause: [],
});
const searchFunction = (baseline: string, candidate: string) =>
  record({
    kind: 'function',
    endpoint: FLAGGED_ENDPOINT,
    baseline: { commit: baseline },
    candidate: { commit: candidate },
  });

describe('the demo verdict', () => {
  it('the story: the v2 rollout, the flag, and the functions that explain them', () => {
    const verdict = checkDemoAlerts(
      [
        rollout,
        flag,
        record({ kind: 'function', endpoint: REGRESSED_ENDPOINT }),
        searchFunction(DEMO_COMMITS.v2, DEMO_COMMITS.v3),
      ],
      { requireRootCause: true },
    );
    assert.deepEqual(verdict, { ok: true, problems: [] });
  });

  it('a function alert on search since v2, which did not touch it, is unexpected', () => {
    const verdict = checkDemoAlerts([rollout, flag, searchFunction(DEMO_COMMITS.v1, DEMO_COMMITS.v2)], {
      requireRootCause: true,
    });
    assert.equal(verdict.ok, false);
    assert.match(verdict.problems.join('\n'), /unexpected function alert on GET \/search \(9b3e8d1/);
  });

  it('the quiet story: the flag and its functions are real, a function alert since v4 is not', () => {
    assert.equal(checkDemoAlerts([flag], { requireRootCause: true, story: 'quiet' }).ok, true);
    const verdict = checkDemoAlerts([flag, searchFunction(DEMO_COMMITS.v3, DEMO_COMMITS.v4)], {
      requireRootCause: true,
      story: 'quiet',
    });
    assert.equal(verdict.ok, false);
    assert.match(verdict.problems.join('\n'), /unexpected function alert on GET \/search/);
  });

  it('with the announced ids: a rollout alert first found already resolved was never announced, and fails', () => {
    const announced = new Set([rollout.alert.id, flag.alert.id]);
    assert.deepEqual(checkDemoAlerts([rollout, flag], { requireRootCause: true, announced }), {
      ok: true,
      problems: [],
    });
    const unannounced = checkDemoAlerts(
      [{ ...rollout, alert: { ...rollout.alert, resolvedBy: DEMO_COMMITS.v3 } }, flag],
      {
        requireRootCause: true,
        announced: new Set([flag.alert.id]),
      },
    );
    assert.equal(unannounced.ok, false);
    assert.match(
      unannounced.problems.join('\n'),
      /the rollout alert on GET \/feed\/:userId was never announced: it was first found already resolved by c7a05f2/,
    );
  });

  it('a missing flag alert is named', () => {
    const verdict = checkDemoAlerts([rollout], { requireRootCause: true });
    assert.match(verdict.problems.join('\n'), /expected one flag alert on GET \/search/);
  });
});
