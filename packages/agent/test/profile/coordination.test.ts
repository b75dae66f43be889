import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CheckInOutcome } from '../../src/export/http-exporter';
import { ProfilingCheckIns } from '../../src/profile/coordination';

/** A collector stand-in that answers from a script and records what it was sent. */
function scripted(answers: CheckInOutcome[], then: CheckInOutcome = { kind: 'answer', profile: true }) {
  const sent: Array<Record<string, unknown>> = [];
  return {
    sent,
    target: {
      checkIn(body: object): Promise<CheckInOutcome> {
        sent.push(body as Record<string, unknown>);
        return Promise.resolve(answers.shift() ?? then);
      },
    },
  };
}

const IDENTITY = { service: 'api', commit: 'c1', host: 'web-1' };

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !condition(); i++) await sleep(10);
  assert.ok(condition(), 'timed out');
}

describe('profiling check-ins', () => {
  it('asks again while the collector does not answer, and takes its answer when it comes', async () => {
    const collector = scripted([
      { kind: 'unreachable', reason: 'connect ECONNREFUSED' },
      { kind: 'unreachable', reason: 'HTTP 503' },
      { kind: 'answer', profile: false },
    ]);
    const decisions: unknown[] = [];
    const checkIns = new ProfilingCheckIns(collector.target, IDENTITY, 60_000, (d) => decisions.push(d), [5, 5, 5]);
    checkIns.start();
    await until(() => decisions.length === 1);
    checkIns.stop();
    assert.deepEqual(decisions, [{ profile: false, by: 'collector' }]);
    assert.equal(collector.sent.length, 3);
    for (const body of collector.sent) {
      assert.deepEqual(body, { ...IDENTITY, instance: checkIns.instance, state: 'asking', checkInMs: 60_000 });
    }
  });

  it('profiles when no attempt gets an answer, and keeps checking in as a profiling process', async () => {
    const collector = scripted(
      [1, 2, 3, 4].map(() => ({ kind: 'unreachable', reason: 'connect ECONNREFUSED' }) as const),
      { kind: 'answer', profile: false },
    );
    const decisions: unknown[] = [];
    const checkIns = new ProfilingCheckIns(collector.target, IDENTITY, 30, (d) => decisions.push(d), [5, 5, 5]);
    checkIns.start();
    await until(() => collector.sent.length >= 6);
    checkIns.stop();
    assert.deepEqual(decisions, [
      { profile: true, by: 'fallback', reason: 'no answer from the collector (connect ECONNREFUSED)' },
    ]);
    assert.deepEqual(
      collector.sent.map((body) => body.state),
      ['asking', 'asking', 'asking', 'asking', ...collector.sent.slice(4).map(() => 'profiling')],
    );
    // The collector's later answers ("no") do not turn the profiler off: the decision is kept.
    assert.equal(decisions.length, 1);
  });

  it('checks in once per period with what it decided, under one instance id, until stopped', async () => {
    const collector = scripted([{ kind: 'answer', profile: false }]);
    const checkIns = new ProfilingCheckIns(collector.target, IDENTITY, 40, () => undefined);
    checkIns.start();
    await until(() => collector.sent.length >= 4);
    checkIns.stop();
    const count = collector.sent.length;
    await sleep(120);
    assert.equal(collector.sent.length, count, 'no check-in after stop()');
    assert.deepEqual(
      collector.sent.map((body) => [body.state, body.instance]),
      collector.sent.map((_, i) => [i === 0 ? 'asking' : 'idle', checkIns.instance]),
    );
  });

  it('stops asking after a refusal (a collector without the route) and profiles', async () => {
    const collector = scripted([{ kind: 'refused', status: 404, body: '{"error":{"code":"ERGOMETER_NOT_FOUND"}}' }]);
    const decisions: unknown[] = [];
    const checkIns = new ProfilingCheckIns(collector.target, IDENTITY, 20, (d) => decisions.push(d));
    checkIns.start();
    await until(() => decisions.length === 1);
    await sleep(100);
    checkIns.stop();
    assert.equal(collector.sent.length, 1);
    assert.deepEqual(decisions, [
      {
        profile: true,
        by: 'fallback',
        reason: 'the collector refused the question with HTTP 404: {"error":{"code":"ERGOMETER_NOT_FOUND"}}',
        refused: true,
      },
    ]);
  });

  it('an error in what the decision starts is reported on the internal-error channel, never thrown into the app', async (t) => {
    const reported: unknown[] = [];
    const onError = (message: unknown) => reported.push((message as { error: unknown }).error);
    diagnosticsChannel.subscribe('ergometer:agent:internal-error', onError);
    t.after(() => diagnosticsChannel.unsubscribe('ergometer:agent:internal-error', onError));
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown) => rejections.push(reason);
    process.on('unhandledRejection', onRejection);
    t.after(() => process.off('unhandledRejection', onRejection));
    const collector = scripted([{ kind: 'answer', profile: true }]);
    const checkIns = new ProfilingCheckIns(collector.target, IDENTITY, 60_000, () => {
      throw new Error('the profiler broke');
    });
    checkIns.start();
    await until(() => reported.length === 1);
    checkIns.stop();
    await sleep(20);
    assert.match(String(reported[0]), /the profiler broke/);
    assert.deepEqual(rejections, []);
  });
});
