import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { loadNativeCounters } from '../src/bindings';
import { type CounterPreference, type CounterSource, CountersError, openCounter, parsePreference } from '../src/index';

const NS_PER_MS = 1e6;
const indexPath = path.join(__dirname, '..', 'src', 'index.js');
const ALL_PREFERENCES: readonly CounterPreference[] = [
  'auto',
  'instructions',
  'task-clock',
  'thread-cputime',
  'js-cpu-usage',
];

/** Burns CPU on the calling thread for `ms` of wall time; returns a value so the loop is not optimised away. */
function spin(ms: number): number {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) x += Math.sqrt(x + 1);
  return x;
}

/**
 * Burns `ms` of CPU as told by `referenceNs`, a clock independent of the one
 * under test, so the amount does not depend on how busy the machine is (a
 * 20 ms wall-clock spin gets ~14 ms of CPU when the other core is loaded).
 */
function burnCpu(ms: number, referenceNs: () => number): void {
  const start = referenceNs();
  const wallLimit = performance.now() + 50 * ms; // a broken reference clock must not hang the test
  let x = 0;
  while (referenceNs() - start < ms * NS_PER_MS && performance.now() < wallLimit) {
    for (let i = 0; i < 1000; i++) x += Math.sqrt(x + 1);
  }
  assert.ok(x > 0);
}

/**
 * Whether this machine exposes hardware instruction counters, asked of the
 * addon directly so the tests below assert the right outcome on either kind
 * of machine (this KVM VM: no PMU, errno 2).
 */
function probeInstructions(): { ok: true } | { ok: false; errno: number } {
  const loaded = loadNativeCounters();
  assert.ok(loaded.native, `the native addon must load for these tests (run scripts/build-native.js)`);
  const opened = loaded.native.tryOpen('instructions');
  if (!opened.ok) return { ok: false, errno: opened.errno };
  opened.close();
  return { ok: true };
}
const pmu = probeInstructions();

/** Runs `fn` with ERGOMETER_COUNTER set to `value` (or unset), restoring it after. */
function withCounterEnv<T>(value: string | undefined, fn: () => T): T {
  const saved = process.env.ERGOMETER_COUNTER;
  if (value === undefined) delete process.env.ERGOMETER_COUNTER;
  else process.env.ERGOMETER_COUNTER = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env.ERGOMETER_COUNTER;
    else process.env.ERGOMETER_COUNTER = saved;
  }
}

describe('auto', () => {
  test('picks instructions when there is a PMU, else cpu_ns and says why instructions failed', () => {
    const counter = withCounterEnv(undefined, () => openCounter());
    try {
      if (pmu.ok) {
        assert.equal(counter.metric, 'instructions');
        assert.equal(counter.source, 'instructions');
        assert.deepEqual(counter.fallbacks, []);
        return;
      }
      assert.equal(counter.metric, 'cpu_ns');
      assert.equal(counter.source, 'task-clock', 'task-clock is the next source and works wherever perf_event does');
      assert.equal(counter.rdpmc, false);
      assert.equal(counter.fallbacks.length, 1);
      const [instructions] = counter.fallbacks;
      assert.equal(instructions?.source, 'instructions');
      assert.equal(instructions?.errno, pmu.errno);
      if (pmu.errno === 2) assert.match(instructions?.reason ?? '', /ENOENT: no hardware PMU/);
      else assert.ok((instructions?.reason ?? '').length > 0);
    } finally {
      counter.close();
    }
  });
});

// Sources that must work on any Linux machine the addon builds on.
const CPU_NS_SOURCES: readonly CounterSource[] = ['task-clock', 'thread-cputime', 'js-cpu-usage'];

for (const source of CPU_NS_SOURCES) {
  describe(`${source}: counts CPU time, not wall time`, () => {
    const open = () => {
      const counter = openCounter({ prefer: source, strict: source !== 'js-cpu-usage' });
      assert.equal(counter.source, source);
      assert.equal(counter.metric, 'cpu_ns');
      assert.deepEqual(counter.fallbacks, []);
      return counter;
    };

    test('values are monotonic', () => {
      const counter = open();
      try {
        let previous = counter.read();
        assert.ok(previous >= 0, `first read ${previous}`);
        for (let i = 0; i < 20_000; i++) {
          const value = counter.read();
          assert.ok(value >= previous, `read ${i}: ${value} < ${previous}`);
          previous = value;
        }
      } finally {
        counter.close();
      }
    });

    test('20 ms of busy CPU advances it by about 20 ms; a 50 ms sleep by far less', async (t) => {
      const counter = open();
      // The busy loop is timed by another per-thread clock (task-clock and clock_gettime read the
      // kernel's accounting through different interfaces). Not process.cpuUsage(): V8's background
      // JIT and GC threads would make it run ahead of this thread.
      const referenceSource = source === 'thread-cputime' ? 'task-clock' : 'thread-cputime';
      const reference = openCounter({ prefer: referenceSource, strict: true });
      try {
        const beforeSpin = counter.read();
        burnCpu(20, reference.read);
        const spinNs = counter.read() - beforeSpin;

        // Best of three: the first await in a process can pay one-off work (timer setup, the test
        // runner reporting) on this thread. A wall-clock counter would show >= 50 ms every time.
        let sleepNs = Number.POSITIVE_INFINITY;
        for (let attempt = 0; attempt < 3; attempt++) {
          const beforeSleep = counter.read();
          await sleep(50);
          sleepNs = Math.min(sleepNs, counter.read() - beforeSleep);
        }

        t.diagnostic(`busy 20 ms: ${spinNs / NS_PER_MS} ms; sleep 50 ms: ${sleepNs / NS_PER_MS} ms`);
        // 15..40 ms: the per-thread clocks agree within a tick; js-cpu-usage also sees V8's background threads.
        assert.ok(spinNs >= 15 * NS_PER_MS && spinNs <= 40 * NS_PER_MS, `busy 20 ms counted ${spinNs / NS_PER_MS} ms`);
        assert.ok(sleepNs < 5 * NS_PER_MS, `sleeping 50 ms counted ${sleepNs / NS_PER_MS} ms`);
      } finally {
        counter.close();
        reference.close();
      }
    });
  });
}

// Runs in the worker: opens its own counter of the source under test, and when told to, burns 100 ms
// of its own thread's CPU (timed by the native thread clock, so the amount holds however busy the
// machine is), then reports its counter's delta.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { openCounter } = require(workerData.indexPath);
const counter = openCounter({ prefer: workerData.source });
const threadClock = openCounter({ prefer: 'thread-cputime', strict: true });
parentPort.once('message', () => {
  const before = counter.read();
  const start = threadClock.read();
  const wallLimit = performance.now() + 5000;
  let x = 0;
  while (threadClock.read() - start < 100e6 && performance.now() < wallLimit) x += Math.sqrt(x + 1);
  parentPort.postMessage({ source: counter.source, deltaNs: counter.read() - before, x });
});
parentPort.postMessage('ready');
`;

interface WorkerReport {
  source: CounterSource;
  deltaNs: number;
}

/** Main thread's counter delta while a worker burns 100 ms of CPU, and the worker's own counter delta. */
async function measureWhileWorkerSpins(source: CounterSource): Promise<{ mainNs: number; worker: WorkerReport }> {
  const counter = openCounter({ prefer: source });
  assert.equal(counter.source, source);
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { indexPath, source } });
  try {
    // Wait until the worker has booted, so its startup is not in the window we measure.
    await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const before = counter.read();
    const done = new Promise<WorkerReport>((resolve, reject) => {
      worker.once('message', (report: WorkerReport) => resolve(report));
      worker.once('error', reject);
    });
    worker.postMessage('go');
    const report = await done;
    return { mainNs: counter.read() - before, worker: report };
  } finally {
    counter.close();
    await worker.terminate();
  }
}

describe('per-thread', () => {
  for (const source of ['task-clock', 'thread-cputime'] as const) {
    test(`${source}: a worker burning 100 ms of CPU barely moves the main thread's counter; its own counts it`, async (t) => {
      const { mainNs, worker } = await measureWhileWorkerSpins(source);
      t.diagnostic(`main thread: ${mainNs / NS_PER_MS} ms; worker: ${worker.deltaNs / NS_PER_MS} ms`);
      assert.equal(worker.source, source, 'the addon loads and opens the same source in a worker');
      assert.ok(worker.deltaNs >= 50 * NS_PER_MS, `worker's own counter saw ${worker.deltaNs / NS_PER_MS} ms`);
      assert.ok(mainNs < 10 * NS_PER_MS, `main thread counter moved ${mainNs / NS_PER_MS} ms`);
    });
  }

  test('js-cpu-usage is process-wide (documented): the main thread sees the worker spin', async (t) => {
    const { mainNs, worker } = await measureWhileWorkerSpins('js-cpu-usage');
    t.diagnostic(`main thread (process-wide): ${mainNs / NS_PER_MS} ms; worker: ${worker.deltaNs / NS_PER_MS} ms`);
    assert.equal(worker.source, 'js-cpu-usage');
    assert.ok(mainNs >= 50 * NS_PER_MS, `process-wide counter moved only ${mainNs / NS_PER_MS} ms`);
  });
});

describe('independent counters', () => {
  // Regression: the addon kept one native counter per thread, so opening a second counter reset the
  // first one's task-clock fd to 0 (its reads went backwards), opening another source made it read that
  // source, and closing either closed both.
  test('regression: opening, failing to open and closing other counters does not disturb a counter', () => {
    const first = openCounter({ prefer: 'task-clock', strict: true });
    try {
      spin(5);
      const before = first.read();
      const second = openCounter({ prefer: 'task-clock', strict: true });
      const other = openCounter({ prefer: 'thread-cputime', strict: true });
      openCounter({ prefer: 'instructions' }).close(); // a failed instructions probe on a VM, then a fallback
      const afterOpens = first.read();
      assert.ok(afterOpens >= before, `first counter went back from ${before} to ${afterOpens}`);
      assert.ok(afterOpens - before < 5 * NS_PER_MS, 'first counter still counts from its own open');
      // thread-cputime counts since the thread started, task-clock since open: far apart values.
      assert.ok(other.read() - first.read() > 1 * NS_PER_MS, 'first counter does not read the other source');
      second.close();
      other.close();
      const afterCloses = first.read();
      assert.ok(afterCloses >= afterOpens, `first counter read ${afterCloses} after the others closed`);
    } finally {
      first.close();
    }
  });

  test('close() is idempotent and native reads after close return -1', () => {
    const counter = openCounter({ prefer: 'thread-cputime', strict: true });
    assert.ok(counter.read() > 0);
    counter.close();
    counter.close();
    assert.equal(counter.read(), -1);
  });
});

describe('strict', () => {
  test("prefer 'instructions' with strict: the counter on a PMU, else ERGOMETER_COUNTERS_UNAVAILABLE", () => {
    if (pmu.ok) {
      const counter = openCounter({ prefer: 'instructions', strict: true });
      assert.equal(counter.metric, 'instructions');
      counter.close();
      return;
    }
    assert.throws(
      () => openCounter({ prefer: 'instructions', strict: true }),
      (error: unknown) => {
        assert.ok(error instanceof CountersError);
        assert.equal(error.code, 'ERGOMETER_COUNTERS_UNAVAILABLE');
        assert.match(error.message, /"instructions" is not available here/);
        return true;
      },
    );
  });

  test("prefer 'instructions' without strict falls back to cpu_ns on a machine without a PMU", () => {
    const counter = openCounter({ prefer: 'instructions' });
    try {
      if (pmu.ok) assert.equal(counter.source, 'instructions');
      else {
        assert.equal(counter.source, 'task-clock');
        assert.equal(counter.metric, 'cpu_ns');
        assert.deepEqual(
          counter.fallbacks.map((f) => f.source),
          ['instructions'],
        );
      }
    } finally {
      counter.close();
    }
  });
});

describe('parsePreference and ERGOMETER_COUNTER', () => {
  test('accepts every source name and auto; undefined and empty mean auto', () => {
    for (const value of ALL_PREFERENCES) assert.equal(parsePreference(value), value);
    assert.equal(parsePreference(undefined), 'auto');
    assert.equal(parsePreference(''), 'auto');
  });

  test('rejects an unknown value with ERGOMETER_BAD_OPTION naming it and the allowed values', () => {
    assert.throws(
      () => parsePreference('Task-Clock'),
      (error: unknown) => {
        assert.ok(error instanceof CountersError);
        assert.equal(error.code, 'ERGOMETER_BAD_OPTION');
        assert.match(error.message, /"Task-Clock"/);
        assert.match(error.message, /auto, instructions, task-clock, thread-cputime, js-cpu-usage/);
        return true;
      },
    );
  });

  test('property: any string is either a known preference (returned as is), empty (auto), or rejected', () => {
    const known = new Set<string>(ALL_PREFERENCES);
    fc.assert(
      fc.property(
        fc.oneof(fc.string(), fc.constantFrom(...ALL_PREFERENCES), fc.string({ unit: 'binary' })),
        (value) => {
          if (value === '') return parsePreference(value) === 'auto';
          if (known.has(value)) return parsePreference(value) === value;
          try {
            parsePreference(value);
            return false;
          } catch (error) {
            return error instanceof CountersError && error.code === 'ERGOMETER_BAD_OPTION';
          }
        },
      ),
    );
  });

  test('openCounter() honours ERGOMETER_COUNTER, and an explicit prefer wins over it', () => {
    const fromEnv = withCounterEnv('thread-cputime', () => openCounter());
    assert.equal(fromEnv.source, 'thread-cputime');
    fromEnv.close();
    const explicit = withCounterEnv('thread-cputime', () => openCounter({ prefer: 'task-clock' }));
    assert.equal(explicit.source, 'task-clock');
    explicit.close();
    const js = withCounterEnv('js-cpu-usage', () => openCounter());
    assert.equal(js.source, 'js-cpu-usage');
  });

  // Regression: an unknown `prefer` from untyped JavaScript reached the addon and came back as a RangeError
  // with code ERGOMETER_BAD_ARGUMENT.
  test('regression: openCounter() with an unknown prefer throws ERGOMETER_BAD_OPTION, not a native RangeError', () => {
    for (const prefer of ['bogus', 'Task-Clock', 42, null]) {
      assert.throws(
        () => openCounter({ prefer: prefer as unknown as CounterPreference }),
        (error: unknown) =>
          error instanceof CountersError && error.code === 'ERGOMETER_BAD_OPTION' && /prefer/.test(error.message),
      );
    }
  });

  test('openCounter() with an unknown ERGOMETER_COUNTER throws ERGOMETER_BAD_OPTION', () => {
    assert.throws(
      () => withCounterEnv('rdpmc', () => openCounter()),
      (error: unknown) => error instanceof CountersError && error.code === 'ERGOMETER_BAD_OPTION',
    );
  });
});

describe('the addon fails to load', () => {
  // A preload that makes every require() of a .node file throw, as a missing build or an ABI mismatch would.
  const PRELOAD = `
const Module = require('node:module');
Module._extensions['.node'] = function () {
  throw new Error('simulated: addon blocked by test preload');
};
`;
  const CHILD = `
const counters = require(process.env.TEST_INDEX_PATH);
const counter = counters.openCounter();
const first = counter.read();
let x = 0;
const end = performance.now() + 20;
while (performance.now() < end) x += Math.sqrt(x + 1);
let strict;
try {
  counters.openCounter({ prefer: 'task-clock', strict: true });
  strict = 'did not throw';
} catch (error) {
  strict = error.code;
}
process.stdout.write(JSON.stringify({
  source: counter.source, metric: counter.metric, fallbacks: counter.fallbacks,
  deltaNs: counter.read() - first, strict,
}));
`;

  test('importing does not throw; openCounter() falls back to js-cpu-usage and says the addon did not load', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-no-addon-'));
    try {
      const preload = path.join(dir, 'block-node-addons.js');
      writeFileSync(preload, PRELOAD);
      const env: NodeJS.ProcessEnv = { ...process.env, TEST_INDEX_PATH: indexPath };
      delete env.ERGOMETER_COUNTER;
      delete env.NODE_OPTIONS;
      const child = spawnSync(process.execPath, ['--require', preload, '-e', CHILD], { env, encoding: 'utf8' });
      assert.equal(child.status, 0, `child failed:\n${child.stderr}`);
      const result = JSON.parse(child.stdout) as {
        source: string;
        metric: string;
        fallbacks: { source: string; reason: string; errno?: number }[];
        deltaNs: number;
        strict: string;
      };
      assert.equal(result.source, 'js-cpu-usage');
      assert.equal(result.metric, 'cpu_ns');
      assert.deepEqual(
        result.fallbacks.map((f) => f.source),
        ['instructions', 'task-clock', 'thread-cputime'],
      );
      for (const fallback of result.fallbacks) {
        assert.match(fallback.reason, /native addon did not load: simulated: addon blocked by test preload/);
      }
      assert.ok(
        result.deltaNs >= 5 * NS_PER_MS,
        `js fallback counted ${result.deltaNs / NS_PER_MS} ms of a 20 ms spin`,
      );
      assert.equal(result.strict, 'ERGOMETER_COUNTERS_UNAVAILABLE');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
