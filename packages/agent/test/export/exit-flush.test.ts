/**
 * Flush on SIGTERM and beforeExit (src/exit-flush.ts) in real processes: what is queued reaches the
 * collector, the process ends as it would have without the agent, and nothing keeps it alive.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FaultyCollector } from '../support/faulty-collector';

const FIXTURE = path.join(__dirname, '..', '..', '..', 'test', 'export', 'fixtures', 'exit-app.cjs');

let collector: FaultyCollector;
before(async () => {
  collector = await FaultyCollector.start('s3cret');
});
after(async () => {
  await collector.stop();
});

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the fixture; `whenQueued` runs once it has a sample queued. */
function run(mode: string, whenQueued: (pid: number) => void): Promise<Ended> {
  const child = spawn(process.execPath, [FIXTURE], {
    env: { ...process.env, COLLECTOR: collector.url, EXIT_MODE: mode },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    if (stdout.includes('queued 1')) whenQueued(child.pid!);
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr });
    }),
  );
}

function batchesOf(service: string, since: number): number {
  return [...collector.batches.values()].filter((b) => b.service === service && b.samples.length > 0).length - since;
}

test('SIGTERM with no other listener: the queue is flushed, then the process dies of SIGTERM as without the agent', async () => {
  const before = batchesOf('exit', 0);
  const ended = await run('sigterm', (pid) => process.kill(pid, 'SIGTERM'));
  assert.equal(ended.signal, 'SIGTERM', ended.stderr);
  assert.equal(batchesOf('exit', before), 1, 'the queued sample was not delivered');
});

test('SIGTERM with the app’s own listener: the app decides how to exit; the agent flushes meanwhile', async () => {
  const before = batchesOf('exit', 0);
  const ended = await run('sigterm-owned', (pid) => process.kill(pid, 'SIGTERM'));
  assert.equal(ended.code, 7, ended.stderr);
  assert.equal(ended.signal, null);
  assert.equal(batchesOf('exit', before), 1);
});

test('the event loop runs dry: beforeExit flushes and the process exits on its own', async () => {
  const before = batchesOf('exit', 0);
  const ended = await run('drain', () => undefined);
  assert.equal(ended.code, 0, ended.stderr);
  assert.equal(batchesOf('exit', before), 1);
});

test('a collector that hangs does not keep a finished process alive beyond the exit deadline', async () => {
  await collector.setMode('hang');
  try {
    const ended = await run('drain', () => undefined);
    // Exited on its own (a process still waiting is SIGKILLed after 20 s: code null).
    assert.equal(ended.code, 0, ended.stderr);
  } finally {
    await collector.setMode('ok');
  }
});
