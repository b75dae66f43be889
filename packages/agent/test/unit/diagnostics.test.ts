/**
 * The agent reports on itself through diagnostics_channel (STYLE.md), and a
 * subscriber's bug never breaks the agent's own code path.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import diagnosticsChannel from 'node:diagnostics_channel';
import path from 'node:path';
import { test } from 'node:test';
import { CHANNEL_NAMES, channels, publish } from '../../src/diagnostics';

test('channel names are namespaced ergometer:agent:*', () => {
  assert.deepEqual(CHANNEL_NAMES, {
    samplesDropped: 'ergometer:agent:samples-dropped',
    batchDropped: 'ergometer:agent:batch-dropped',
    batchRetry: 'ergometer:agent:batch-retry',
    batchSent: 'ergometer:agent:batch-sent',
    counterSelected: 'ergometer:agent:counter-selected',
    profileSent: 'ergometer:agent:profile-sent',
    profileDropped: 'ergometer:agent:profile-dropped',
    profilingChosen: 'ergometer:agent:profiling-chosen',
    internalError: 'ergometer:agent:internal-error',
  });
  for (const [key, channel] of Object.entries(channels)) {
    assert.equal(channel, diagnosticsChannel.channel(CHANNEL_NAMES[key as keyof typeof channels]), key);
  }
});

test('publish delivers the message to every subscriber', (t) => {
  const seen: unknown[] = [];
  const onMessage = (message: unknown, name: string | symbol) => seen.push([name, message]);
  diagnosticsChannel.subscribe('ergometer:agent:batch-sent', onMessage);
  t.after(() => diagnosticsChannel.unsubscribe('ergometer:agent:batch-sent', onMessage));
  publish(channels.batchSent, { batchId: 'b', samples: 3 });
  assert.deepEqual(seen, [['ergometer:agent:batch-sent', { batchId: 'b', samples: 3 }]]);
});

test('publish without subscribers is a no-op', () => {
  assert.equal(channels.internalError.hasSubscribers, false);
  publish(channels.internalError, { error: new Error('nobody listens') });
});

test('a subscriber that throws does not break publish, the other subscribers, or the agent', () => {
  const fixture = path.join(__dirname, 'fixtures', 'throwing-subscriber.js');
  const result = spawnSync(process.execPath, [fixture], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(result.status, 0, result.stderr);
  const report = JSON.parse(result.stdout) as {
    returned: boolean;
    received: { count: number; reason: string }[];
    addThrew: boolean;
    queued: number;
    uncaught: string[];
  };
  assert.equal(report.returned, true, 'publish() returned to its caller');
  assert.deepEqual(report.received[0], { count: 1, reason: 'test' }, 'the next subscriber still got the message');
  assert.ok(report.received.length > 1, 'and the drops published from add()');
  assert.equal(report.addThrew, false, 'add() did not throw');
  assert.ok(report.queued <= 5, 'and kept its bound');
  // Node.js hands the subscriber's exception to the process on the next tick
  // (documented diagnostics_channel behaviour): it belongs to the code that
  // subscribed, and it is never thrown into the agent's caller.
  assert.ok(
    report.uncaught.length > 0 && report.uncaught.every((m) => m === 'subscriber bug'),
    String(report.uncaught),
  );
});
