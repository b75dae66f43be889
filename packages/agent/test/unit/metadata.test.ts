/**
 * Batch metadata (hostClass) and which collectors start() accepts.
 */
import assert from 'node:assert/strict';
import os from 'node:os';
import { test } from 'node:test';
import { Agent } from '../../src/agent';
import { ErgometerError } from '../../src/errors';
import { detectHostClass, resolveOptions } from '../../src/options';

test('hostClass: CPU model without vendor marks and clock, and the CPU count', () => {
  const cpus = (model: string, n: number) => Array.from({ length: n }, () => ({ model }));
  assert.equal(
    detectHostClass(cpus('Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz', 2)),
    'Intel Xeon Platinum 8375C x2',
  );
  assert.equal(detectHostClass(cpus('AMD EPYC 7B13', 4)), 'AMD EPYC 7B13 x4');
  assert.equal(detectHostClass(cpus('Apple M2 Pro', 10)), 'Apple M2 Pro x10');
  assert.equal(detectHostClass(cpus('AMD Ryzen 9 5950X 16-Core Processor', 32)), 'AMD Ryzen 9 5950X 16-Core x32');
  assert.equal(detectHostClass(cpus('', 1)), `${os.arch()} unknown x1`);
  assert.equal(detectHostClass([]), `${os.arch()} unknown x0`);
  assert.match(detectHostClass(), / x\d+$/, 'this machine');
});

test('collectors: http and https URLs and file paths are accepted; anything else names the fix', async () => {
  const make = (collector: string) =>
    new Agent(resolveOptions({ service: 's', collector, commit: 'c', exitFlushTimeoutMs: 0 }));
  for (const collector of ['http://127.0.0.1:7070', 'https://ergometer.example:443/base']) {
    const agent = make(collector);
    await agent.shutdown({ timeoutMs: 10 });
  }
  for (const collector of ['ftp://x', 'localhost:7070', 'http://']) {
    assert.throws(
      () => make(collector),
      (error: unknown) =>
        error instanceof ErgometerError &&
        error.code === 'ERGOMETER_UNSUPPORTED_COLLECTOR' &&
        error.message.includes(collector),
      collector,
    );
  }
});
