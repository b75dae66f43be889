/**
 * The crash test, parameterised by backend: writers post batches to a real `ergometer serve`
 * child process while it is SIGKILLed at random points and restarted, several times. A writer
 * retries every unacknowledged batch with the same batchId (as the agent does). At the end every
 * batch has been acknowledged once, and the store must hold exactly their samples: nothing lost
 * from an acknowledged batch, nothing stored twice from a retried one.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { wireBatch } from '../ingest/support';

export interface CrashBackend {
  name: string;
  /** Arguments of `ergometer serve` selecting this backend, e.g. `['--db', file]`. */
  serveArgs(dir: string): string[];
  /** Samples of `service` in the store, read after the server has stopped. */
  count(dir: string, service: string): Promise<number>;
  /** Starts what the backend needs (e.g. a ClickHouse server) before the test, and stops it after. */
  setup?(dir: string): Promise<() => Promise<void>>;
}

const MAIN = path.resolve(__dirname, '../../src/cli/main.js');
const INGEST = 'crash-ingest-token';
const SERVICE = 'crash';

interface Server {
  child: ChildProcess;
  url: string;
  exited: Promise<number | null>;
}

async function startServer(args: string[]): Promise<Server> {
  const child = spawn(
    process.execPath,
    [MAIN, 'serve', '--port', '0', '--host', '127.0.0.1', '--ingest-token', INGEST, '--read-token', 'r', ...args],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(stdout);
      if (match) resolve(match[1] as string);
    });
    void exited.then((code) => reject(new Error(`ergometer serve exited with ${code} before listening: ${stderr}`)));
  });
  return { child, url, exited };
}

/** Waits until `done()` holds; fails the test after `ms` instead of hanging. */
async function waitFor(done: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface PendingBatch {
  body: string;
  samples: number;
}

/** Registers the crash test for one backend. */
export function crashTest(backend: CrashBackend, rounds = 5): void {
  test(`crash test (${backend.name}): SIGKILL at random points, ${rounds} times; stored equals acknowledged`, {
    timeout: 300_000,
  }, async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), `ergometer-crash-${backend.name}-`));
    let server: Server | undefined;
    let teardown: (() => Promise<void>) | undefined;
    t.after(async () => {
      if (server && server.child.exitCode === null && server.child.signalCode === null) {
        server.child.kill('SIGKILL');
        await server.exited;
      }
      await teardown?.();
      await rm(dir, { recursive: true, force: true });
    });
    teardown = await backend.setup?.(dir);
    const args = backend.serveArgs(dir);

    const unacknowledged: PendingBatch[] = [];
    let acknowledgedBatches = 0;
    let acknowledgedSamples = 0;
    let duplicates = 0;
    let inFlight = 0;
    let producing = true;
    let stopWriters = false;
    let currentUrl: string | null = null;

    const post = async (batch: PendingBatch): Promise<boolean> => {
      const url = currentUrl;
      if (url === null) return false;
      try {
        const response = await fetch(`${url}/v1/samples`, {
          method: 'POST',
          headers: { authorization: `Bearer ${INGEST}`, 'content-type': 'application/json' },
          body: batch.body,
          signal: AbortSignal.timeout(10_000),
        });
        const answer = (await response.json()) as { accepted?: number; duplicate?: boolean };
        if (response.status !== 200) return false;
        assert.equal(answer.accepted, batch.samples);
        if (answer.duplicate) duplicates++;
        return true;
      } catch {
        return false; // killed mid-request: retry later with the same batchId
      }
    };

    const writer = async (): Promise<void> => {
      while (!stopWriters) {
        let batch = unacknowledged.shift();
        if (batch === undefined) {
          if (!producing) {
            await new Promise((r) => setTimeout(r, 10));
            continue;
          }
          const samples = 1 + Math.floor(Math.random() * 200);
          batch = { body: JSON.stringify(wireBatch(samples, { service: SERVICE, batchId: randomUUID() })), samples };
        }
        inFlight++;
        const acknowledged = await post(batch);
        inFlight--;
        if (acknowledged) {
          acknowledgedBatches++;
          acknowledgedSamples += batch.samples;
        } else {
          unacknowledged.push(batch);
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };

    const writers = Array.from({ length: 4 }, () => writer());
    const killedAfterAcks: number[] = [];
    for (let round = 0; round < rounds; round++) {
      server = await startServer(args);
      currentUrl = server.url;
      const before = acknowledgedBatches;
      // Let some batches through, then kill at a random point (mid-write, mid-parse or idle).
      await waitFor(() => acknowledgedBatches >= before + 3, 60_000, 'three acknowledged batches');
      await new Promise((r) => setTimeout(r, Math.random() * 400));
      server.child.kill('SIGKILL');
      currentUrl = null;
      await server.exited;
      killedAfterAcks.push(acknowledgedBatches);
    }

    // Last start: stop producing, let every unacknowledged batch be retried until acknowledged.
    producing = false;
    server = await startServer(args);
    currentUrl = server.url;
    await waitFor(() => unacknowledged.length === 0 && inFlight === 0, 60_000, 'every batch to be acknowledged');
    stopWriters = true;
    await Promise.all(writers);
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0, 'graceful shutdown exits 0');

    t.diagnostic(
      `${acknowledgedBatches} batches (${acknowledgedSamples} samples) acknowledged, ${duplicates} as duplicates of a write the kill interrupted; kills after ${killedAfterAcks.join(', ')} acks`,
    );
    assert.equal(await backend.count(dir, SERVICE), acknowledgedSamples);
  });
}
