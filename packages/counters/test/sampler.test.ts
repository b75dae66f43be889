import assert from 'node:assert/strict';
import { AsyncLocalStorage } from 'node:async_hooks';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type InterruptSampler, loadInterruptSampler, samplerBuildPath } from '../src/index';

const V8_MAJOR = Number.parseInt(process.versions.v8, 10);

/** The addon itself, built for this Node.js (scripts/test-all.sh builds it for Node 20 and for Node 24). */
function addon(): InterruptSampler {
  return require(samplerBuildPath()) as InterruptSampler;
}

/** Spins in a loop of its own for `ms` of wall time. */
function spinHere(ms: number): number {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) for (let i = 0; i < 1000; i++) x += Math.sqrt(x + i);
  return x;
}

interface Drained {
  stacks: NodeJS.CallSite[][];
  frames: unknown[];
  cpuNanos: number[];
}

/** Drains the sampler and formats each stack as V8's CallSites. */
function drain(native: InterruptSampler): Drained {
  const flat = native.drain();
  const out: Drained = { stacks: [], frames: [], cpuNanos: [] };
  const prepare = Error.prepareStackTrace;
  Error.prepareStackTrace = (_error, sites) => sites;
  try {
    for (let i = 0; i + 2 < flat.length; i += 3) {
      out.stacks.push((flat[i] as { stack: NodeJS.CallSite[] }).stack);
      out.frames.push(flat[i + 1]);
      out.cpuNanos.push(flat[i + 2] as number);
    }
  } finally {
    Error.prepareStackTrace = prepare;
  }
  return out;
}

const leafName = (stack: NodeJS.CallSite[]) => stack.find((s) => s.getFileName() !== undefined)?.getFunctionName();

describe('interrupt sampler', { concurrency: false }, () => {
  test('interrupts running JavaScript about once per interval, where it runs, weighted by the CPU it used', () => {
    const native = addon();
    assert.equal(native.supported(), true);
    assert.ok(loadInterruptSampler().sampler !== null);
    const cpuStart = native.threadCpuNanos();
    const ownStart = native.interruptNanos();
    native.start(2000, 10_000, Error);
    spinHere(400);
    native.stop();
    const cpuSpent = native.threadCpuNanos() - cpuStart;
    const { stacks, cpuNanos } = drain(native);
    // ~200 at 2 ms; the timer thread competes for a CPU on a busy machine, so only the order of magnitude.
    assert.ok(stacks.length >= 40 && stacks.length <= 400, `${stacks.length} samples in 400 ms at a 2 ms interval`);
    const inSpin = stacks.filter((stack) => leafName(stack) === 'spinHere').length;
    assert.ok(inSpin >= stacks.length * 0.9, `${inSpin} of ${stacks.length} samples in spinHere`);
    // The weights add up to the thread's CPU time, less the samples' own cost and what ran after the last one.
    const weights = cpuNanos.reduce((a, b) => a + b, 0);
    assert.ok(weights <= cpuSpent, `weights ${weights} ns > thread CPU ${cpuSpent} ns`);
    assert.ok(weights >= cpuSpent * 0.6, `weights ${weights} ns of ${cpuSpent} ns of thread CPU`);
    // What the interrupts themselves cost is counted apart: more than nothing, less than what they sampled.
    const own = native.interruptNanos() - ownStart;
    assert.ok(own > 0 && own < weights, `interrupts ${own} ns against ${weights} ns sampled`);
  });

  test('captures deep stacks whatever the app set Error.stackTraceLimit to, and leaves it as it was', () => {
    const native = addon();
    const deep = (n: number): number => (n === 0 ? spinHere(100) : deep(n - 1) + 1);
    const saved = Error.stackTraceLimit;
    Error.stackTraceLimit = 5;
    try {
      native.start(1000, 10_000, Error);
      deep(60);
      native.stop();
      assert.equal(Error.stackTraceLimit, 5);
    } finally {
      Error.stackTraceLimit = saved;
    }
    const { stacks } = drain(native);
    assert.ok(stacks.length > 10);
    const depth = Math.max(...stacks.map((stack) => stack.length));
    assert.ok(depth >= 60, `deepest stack ${depth} frames`);
  });

  test('takes no sample after stop(), keeps what was not drained, and drops beyond maxWaiting', async () => {
    const native = addon();
    native.start(1000, 10_000, Error);
    spinHere(50);
    native.stop();
    const stoppedAt = native.samples();
    spinHere(50);
    await sleep(20);
    assert.equal(native.samples(), stoppedAt);
    assert.ok(drain(native).stacks.length > 0);
    assert.equal(drain(native).stacks.length, 0);
    const droppedBefore = native.dropped();
    native.start(500, 3, Error);
    spinHere(60);
    native.stop();
    native.stop();
    assert.equal(drain(native).stacks.length, 3);
    assert.ok(native.dropped() > droppedBefore);
  });

  test('with a label slot, records the value it holds when each sample is taken', () => {
    const native = addon();
    const slot: unknown[] = ['before'];
    const labels = { name: 'request-b' };
    native.start(1000, 10_000, Error, slot);
    spinHere(40);
    slot[0] = labels;
    spinHere(40);
    slot[0] = undefined;
    spinHere(40);
    native.stop();
    const { frames } = drain(native);
    const count = (value: unknown) => frames.filter((frame) => frame === value).length;
    assert.ok(count('before') > 0 && count(labels) > 0 && count(undefined) > 0, `${frames.length} samples`);
    assert.equal(count('before') + count(labels) + count(undefined), frames.length);
    assert.throws(() => (native.start as (...args: unknown[]) => void)(1000, 10, Error, {}), TypeError);
  });

  test('records the AsyncContextFrame of the interrupted code, after awaits too (V8 13; before it, nothing without a slot)', async () => {
    const native = addon();
    const storage = new AsyncLocalStorage<string>();
    native.start(1000, 10_000, Error);
    await storage.run('request-a', async () => {
      await null;
      spinHere(40);
      await new Promise((resolve) => setImmediate(resolve));
      spinHere(40);
    });
    spinHere(40);
    native.stop();
    const { frames } = drain(native);
    assert.ok(frames.length > 0);
    if (V8_MAJOR < 13) {
      assert.ok(frames.every((frame) => frame === undefined));
      assert.equal(
        storage.run('x', () => native.hasContinuationData()),
        false,
      );
      return;
    }
    // Node's AsyncContextFrame is a Map from storage to value (not an instance of this realm's Map).
    const stores = frames.map((frame) =>
      typeof frame === 'object' && frame !== null ? Map.prototype.get.call(frame, storage) : undefined,
    );
    const a = stores.filter((store) => store === 'request-a').length;
    const none = stores.filter((store) => store === undefined).length;
    assert.ok(a > 0 && none > 0, JSON.stringify(stores));
    assert.ok(a > none, `two thirds of the spinning ran in request-a: ${a} against ${none}`);
    assert.equal(
      storage.run('x', () => native.hasContinuationData()),
      !process.execArgv.includes('--no-async-context-frame'),
    );
  });

  test('refuses bad arguments with a TypeError', () => {
    const native = addon();
    const start = native.start as (...args: unknown[]) => void;
    assert.throws(() => start(10, 10, Error), TypeError);
    assert.throws(() => start('1000', 10, Error), TypeError);
    assert.throws(() => start(1000, 0, Error), TypeError);
    assert.throws(() => start(1000, 10), TypeError);
  });

  test('a process that exits while sampling exits cleanly (the timer thread is stopped at teardown)', () => {
    const script = `
        const { loadInterruptSampler } = require(${JSON.stringify(path.join(__dirname, '..', 'src', 'index.js'))});
        const { sampler } = loadInterruptSampler();
        sampler.start(200, 100000, Error);
        const end = Date.now() + 100;
        while (Date.now() < end) {}
        console.log(sampler.samples() > 0 ? 'sampled' : 'none');`;
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
