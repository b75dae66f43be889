import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type InterruptSampler, loadInterruptSampler, samplerBuildPath } from '../src/index';

/** The build for this Node.js must exist here: scripts/test-all.sh builds it for Node 20 and for Node 24. */
function sampler(): InterruptSampler {
  const loaded = loadInterruptSampler();
  assert.ok(loaded.sampler, `the interrupt sampler must load for these tests: ${loaded.sampler ?? loaded.loadError}`);
  return loaded.sampler;
}

/** Spins in a loop of its own for `ms` of wall time. */
function spinHere(ms: number): number {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) for (let i = 0; i < 1000; i++) x += Math.sqrt(x + i);
  return x;
}

/** The name of the innermost JavaScript function on the stack of the code the sampler interrupted. */
function interruptedFunction(above: (...args: never[]) => unknown): string | null {
  const prepare = Error.prepareStackTrace;
  try {
    Error.prepareStackTrace = (_error, sites) => sites;
    const holder: { stack?: NodeJS.CallSite[] } = {};
    Error.captureStackTrace(holder, above);
    return holder.stack?.find((site) => site.getFileName() !== undefined)?.getFunctionName() ?? null;
  } finally {
    Error.prepareStackTrace = prepare;
  }
}

describe('interrupt sampler', () => {
  test('interrupts running JavaScript about once per interval, where it runs, weighted by the CPU it used', () => {
    const native = sampler();
    const seen = new Map<string | null, number>();
    let cpuNanos = 0;
    const onSample = (cpu: number): void => {
      cpuNanos += cpu;
      const name = interruptedFunction(onSample);
      seen.set(name, (seen.get(name) ?? 0) + 1);
    };
    const before = native.samples();
    const cpuStart = native.threadCpuNanos();
    native.start(2000, onSample);
    spinHere(400);
    native.stop();
    const cpuSpent = native.threadCpuNanos() - cpuStart;
    const taken = native.samples() - before;
    const inSpin = seen.get('spinHere') ?? 0;
    // ~200 at 2 ms; the timer thread competes for a CPU on a busy machine, so only the order of magnitude.
    assert.ok(taken >= 40 && taken <= 400, `${taken} samples in 400 ms at a 2 ms interval`);
    assert.ok(inSpin >= taken * 0.9, `${inSpin} of ${taken} samples in spinHere: ${JSON.stringify([...seen])}`);
    // The weights add up to the thread's CPU time, less the samples' own cost and what ran after the last one.
    assert.ok(cpuNanos <= cpuSpent, `weights ${cpuNanos} ns > thread CPU ${cpuSpent} ns`);
    assert.ok(cpuNanos >= cpuSpent * 0.6, `weights ${cpuNanos} ns of ${cpuSpent} ns of thread CPU`);
  });

  test('takes no sample after stop(), and a restart takes the new callback', async () => {
    const native = sampler();
    let first = 0;
    native.start(1000, () => {
      first++;
    });
    spinHere(50);
    native.stop();
    const stoppedAt = native.samples();
    spinHere(50);
    await sleep(20);
    assert.equal(native.samples(), stoppedAt);
    assert.ok(first > 0);
    let second = 0;
    native.start(1000, () => {
      second++;
    });
    native.start(1000, () => {
      second += 1000;
    });
    spinHere(50);
    native.stop();
    native.stop();
    assert.ok(second >= 1000 && second % 1000 === 0, `only the last callback runs: ${second}`);
  });

  test('an exception in the callback never reaches the interrupted code', () => {
    const native = sampler();
    let calls = 0;
    native.start(1000, () => {
      calls++;
      throw new Error('from the sampler');
    });
    let result = 0;
    assert.doesNotThrow(() => {
      result = spinHere(60);
    });
    native.stop();
    assert.ok(calls > 0 && result > 0);
  });

  test('refuses bad arguments with a TypeError', () => {
    const native = sampler();
    assert.throws(() => native.start(10, () => undefined), TypeError);
    assert.throws(() => (native.start as (a: unknown, b: unknown) => void)('1000', () => undefined), TypeError);
    assert.throws(() => (native.start as (a: unknown, b: unknown) => void)(1000, undefined), TypeError);
  });

  test('sees the AsyncLocalStorage of the interrupted code, after awaits too', async () => {
    const native = sampler();
    const storage = new AsyncLocalStorage<string>();
    const stores = new Map<string | undefined, number>();
    native.start(1000, () => {
      const store = storage.getStore();
      stores.set(store, (stores.get(store) ?? 0) + 1);
    });
    await storage.run('request-a', async () => {
      await null;
      spinHere(40);
      await new Promise((resolve) => setImmediate(resolve));
      spinHere(40);
    });
    spinHere(40);
    native.stop();
    const a = stores.get('request-a') ?? 0;
    const none = stores.get(undefined) ?? 0;
    assert.ok(a > 0 && none > 0, JSON.stringify([...stores]));
    assert.ok(a > none, `two thirds of the spinning ran in request-a: ${JSON.stringify([...stores])}`);
  });

  test('tells whether AsyncLocalStorage is backed by AsyncContextFrame (Node 24) or not (Node 20)', () => {
    const native = sampler();
    const storage = new AsyncLocalStorage<number>();
    const inside = storage.run(1, () => native.hasContinuationData());
    assert.equal(inside, Number(process.versions.node.split('.')[0]) >= 24);
  });

  test('a process that exits while sampling exits cleanly (the timer thread is stopped at teardown)', () => {
    const script = `
      const { loadInterruptSampler } = require(${JSON.stringify(path.join(__dirname, '..', 'src', 'index.js'))});
      const { sampler } = loadInterruptSampler();
      let n = 0;
      sampler.start(200, () => { n++; });
      const end = Date.now() + 100;
      while (Date.now() < end) {}
      console.log(n > 0 ? 'sampled' : 'none');`;
    const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stdout.trim(), 'sampled');
  });

  test('without a build for the Node.js ABI, says so and how to build it, without throwing', () => {
    assert.match(samplerBuildPath('999'), /abi-999[\\/]ergometer_sampler\.node$/);
    const loaded = loadInterruptSampler('999');
    assert.equal(loaded.sampler, null);
    assert.ok(
      !loaded.sampler &&
        /ABI 999\): not built; build it with .*build-native\.js --sampler/.test(loaded.loadError.message),
    );
  });
});
