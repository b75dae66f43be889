import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CheckIn, ProfilingCoordinator } from '../../src/server/profiling-coordinator';
import { parsePrometheus, READ_TOKEN, startTestCollector } from './harness';

function asking(instance: string, commit = 'v2', service = 'api'): CheckIn {
  return { service, commit, host: 'web-1', instance, state: 'asking', checkInMs: 60_000 };
}

/** The answers of `n` processes of one commit asking one after another. */
function rollout(coordinator: ProfilingCoordinator, n: number, commit = 'v2'): boolean[] {
  return Array.from({ length: n }, (_, i) => coordinator.checkIn(asking(`p${i}`, commit)).profile);
}

test('a commit gets its minimum of profiling processes, then about the fraction of the rest', () => {
  const coordinator = new ProfilingCoordinator({ minProcesses: 2, processFraction: 0.25 }, () => 1_000_000);
  const answers = rollout(coordinator, 20);
  assert.deepEqual(answers.slice(0, 3), [true, true, false], 'the first two profile, the third does not');
  assert.equal(answers.filter(Boolean).length, 5, '20 processes at a quarter: 5 profile');
  assert.deepEqual(coordinator.counts(), { processes: 20, profiling: 5 });
  // Another commit (a canary) and another service each get their own minimum.
  assert.deepEqual(rollout(coordinator, 3, 'v3'), [true, true, false]);
  assert.equal(coordinator.checkIn(asking('q0', 'v2', 'web')).profile, true);
});

test('by default, 2 processes of a commit profile, then a tenth: 3 of 30', () => {
  const answers = rollout(new ProfilingCoordinator(undefined, () => 0), 30);
  assert.deepEqual(
    answers.flatMap((profile, i) => (profile ? [i + 1] : [])),
    [1, 2, 21],
  );
});

test('a fraction of 0 profiles exactly the minimum; a minimum of 0 and a fraction of 1 profiles every process', () => {
  const minimumOnly = new ProfilingCoordinator({ minProcesses: 1, processFraction: 0 }, () => 0);
  assert.deepEqual(rollout(minimumOnly, 4), [true, false, false, false]);
  const all = new ProfilingCoordinator({ minProcesses: 0, processFraction: 1 }, () => 0);
  assert.deepEqual(rollout(all, 4), [true, true, true, true]);
  const none = new ProfilingCoordinator({ minProcesses: 0, processFraction: 0 }, () => 0);
  assert.deepEqual(rollout(none, 3), [false, false, false]);
});

test('the same question twice gets the same answer; a check-in keeps a process counted', () => {
  let now = 0;
  const coordinator = new ProfilingCoordinator({ minProcesses: 1, processFraction: 0 }, () => now);
  assert.equal(coordinator.checkIn(asking('a')).profile, true);
  assert.equal(coordinator.checkIn(asking('b')).profile, false);
  // An answer lost on the way: the process asks again and is not given a second place.
  assert.equal(coordinator.checkIn(asking('a')).profile, true);
  assert.equal(coordinator.checkIn(asking('b')).profile, false);
  // Two minutes on, both check in: still counted, the decisions stand.
  now = 120_000;
  assert.equal(coordinator.checkIn({ ...asking('a'), state: 'profiling' }).profile, true);
  assert.equal(coordinator.checkIn({ ...asking('b'), state: 'idle' }).profile, false);
  assert.deepEqual(coordinator.counts(), { processes: 2, profiling: 1 });
});

test('a process that stops checking in is forgotten after three periods, and its place goes to the next', () => {
  let now = 0;
  const coordinator = new ProfilingCoordinator({ minProcesses: 1, processFraction: 0 }, () => now);
  assert.equal(coordinator.checkIn(asking('a')).profile, true);
  now = 3 * 60_000; // exactly three periods: still counted
  assert.equal(coordinator.checkIn(asking('b')).profile, false);
  now = 3 * 60_000 + 1; // a has missed three check-ins; b checked in at 180 000
  assert.deepEqual(coordinator.counts(), { processes: 1, profiling: 0 });
  assert.equal(coordinator.checkIn(asking('c')).profile, true, 'the dead profiler no longer holds the place');
});

test('after a restart of the collector, check-ins rebuild the count, and new processes are answered from it', () => {
  const coordinator = new ProfilingCoordinator({ minProcesses: 2, processFraction: 0 }, () => 0);
  // Processes that decided before the restart say so; the collector believes them.
  assert.equal(coordinator.checkIn({ ...asking('a'), state: 'profiling' }).profile, true);
  assert.equal(coordinator.checkIn({ ...asking('b'), state: 'profiling' }).profile, true);
  assert.equal(coordinator.checkIn({ ...asking('c'), state: 'idle' }).profile, false);
  assert.equal(coordinator.checkIn(asking('d')).profile, false, 'two profile already');
});

test('beyond its bound on remembered processes it answers by a draw, and remembers nothing more', () => {
  const draws = [0.1, 0.9];
  const coordinator = new ProfilingCoordinator(
    { minProcesses: 5, processFraction: 0.5 },
    () => 0,
    2,
    () => draws.shift() ?? 0,
  );
  assert.deepEqual(rollout(coordinator, 2), [true, true]);
  assert.equal(coordinator.checkIn(asking('x')).profile, true);
  assert.equal(coordinator.checkIn(asking('y')).profile, false);
  assert.deepEqual(coordinator.counts(), { processes: 2, profiling: 2 });
});

test('POST /v1/profiling answers with the decision, validates the question, and needs the ingest token', {
  timeout: 60_000,
}, async (t) => {
  const c = await startTestCollector(t, { profiling: { minProcesses: 1, processFraction: 0 } });
  const question = asking('11111111-2222-3333-4444-555555555555');
  const first = await c.post('/v1/profiling', question);
  assert.equal(first.status, 200);
  assert.deepEqual(first.json, { profile: true });
  assert.deepEqual((await c.post('/v1/profiling', { ...question, instance: 'other' })).json, { profile: false });

  const bad = await c.post('/v1/profiling', { ...question, state: 'maybe' });
  assert.equal(bad.status, 400);
  assert.match(bad.text, /ERGOMETER_BAD_CHECK_IN/);
  assert.match(bad.text, /state: expected one of asking, profiling, idle, got \\"maybe\\"/);
  const noCommit = await c.post('/v1/profiling', { ...question, commit: undefined });
  assert.equal(noCommit.status, 400);
  assert.match(noCommit.text, /commit: expected a string/);
  assert.equal((await c.post('/v1/profiling', '{"service":')).status, 400);
  assert.equal((await c.post('/v1/profiling', question, { token: READ_TOKEN })).status, 401);
  assert.equal((await c.post('/v1/profiling', question, { token: null })).status, 401);

  const metrics = parsePrometheus(await (await fetch(`${c.url}/metrics`)).text());
  assert.equal(metrics.get('ergometer_profiling_processes'), 2);
  assert.equal(metrics.get('ergometer_profiling_processes_profiling'), 1);
  assert.equal(await c.store.sampleCount(), 0, 'a check-in stores nothing');
});
