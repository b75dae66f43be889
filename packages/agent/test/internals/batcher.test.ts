import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Batcher, type BatchHeader } from '../../src/export/batcher';
import { FileExporter } from '../../src/export/file-exporter';
import type { Exporter, WireBatch, WireSample } from '../../src/export/wire';

const header: BatchHeader = {
  v: 1,
  service: 'svc',
  host: 'h',
  region: 'r',
  commit: 'c',
  metric: 'cpu_ns',
  agent: { version: '0.1.0', runtime: 'node test', counter: 'task-clock' },
};
const sample = (i: number): WireSample => ({ ts: i, endpoint: 'GET /x', status: 200, cost: i, wallMs: 1, weight: 1 });

function tempFile() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-batcher-'));
  return { file: path.join(dir, 'out.ndjson'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

function readBatches(file: string): WireBatch[] {
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as WireBatch);
}

test('batches are NDJSON lines in wire format v1, cut by size', async () => {
  const { file, cleanup } = tempFile();
  try {
    const batcher = new Batcher(header, new FileExporter(file), {
      flushIntervalMs: 60_000,
      maxBatchSamples: 3,
      maxQueuedSamples: 100,
    });
    for (let i = 0; i < 7; i++) batcher.add(sample(i));
    await batcher.flush();
    const batches = readBatches(file);
    assert.deepEqual(
      batches.map((b) => b.samples.map((s) => s.ts)),
      [[0, 1, 2], [3, 4, 5], [6]],
    );
    assert.equal(new Set(batches.map((b) => b.batchId)).size, 3);
    for (const b of batches) {
      assert.deepEqual(Object.keys(b).sort(), [
        'agent',
        'batchId',
        'commit',
        'counts',
        'host',
        'metric',
        'region',
        'samples',
        'service',
        'users',
        'v',
      ]);
      assert.deepEqual(b.agent, { ...header.agent, dropped: 0 });
      assert.equal(b.v, 1);
    }
  } finally {
    cleanup();
  }
});

test('a lone sample is written after flushIntervalMs without an explicit flush', async () => {
  const { file, cleanup } = tempFile();
  try {
    const batcher = new Batcher(header, new FileExporter(file), {
      flushIntervalMs: 30,
      maxBatchSamples: 100,
      maxQueuedSamples: 100,
    });
    batcher.add(sample(1));
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(readBatches(file)[0]?.samples.length, 1);
    assert.equal(batcher.queued, 0);
  } finally {
    cleanup();
  }
});

test('memory is bounded: oldest samples go first, drops are counted and reported', async () => {
  const failing: Exporter = { send: () => Promise.reject(new Error('collector down')), close: async () => {} };
  const drops: { count: number; reason: string }[] = [];
  const failedBatches: unknown[] = [];
  const onDrop = (message: unknown) => drops.push(message as { count: number; reason: string });
  const onBatch = (message: unknown) => failedBatches.push(message);
  diagnosticsChannel.subscribe('ergometer:agent:samples-dropped', onDrop);
  diagnosticsChannel.subscribe('ergometer:agent:batch-dropped', onBatch);
  try {
    const sent: WireBatch[] = [];
    let fail = true;
    const flaky: Exporter = {
      send(batch) {
        if (fail) return failing.send(batch);
        sent.push(batch);
        return Promise.resolve();
      },
      close: async () => {},
    };
    const batcher = new Batcher(header, flaky, {
      flushIntervalMs: 60_000,
      maxBatchSamples: 1000,
      maxQueuedSamples: 50,
    });
    for (let i = 0; i < 120; i++) {
      batcher.add(sample(i));
      assert.ok(batcher.queued <= 50, `queue grew to ${batcher.queued}`);
    }
    const queueDrops = drops.reduce((n, d) => n + d.count, 0);
    assert.equal(queueDrops, 120 - batcher.queued);
    await batcher.flush(); // fails: the queued samples are dropped and counted
    assert.equal(failedBatches.length, 1);
    fail = false;
    batcher.add(sample(999));
    await batcher.flush();
    assert.equal(sent.length, 1);
    assert.equal(sent[0]!.agent.dropped, 120, 'every lost sample is reported in the next batch');
    assert.deepEqual(
      sent[0]!.samples.map((s) => s.ts),
      [999],
    );
  } finally {
    diagnosticsChannel.unsubscribe('ergometer:agent:samples-dropped', onDrop);
    diagnosticsChannel.unsubscribe('ergometer:agent:batch-dropped', onBatch);
  }
});

test('the newest samples survive an overflow', () => {
  const never: Exporter = { send: () => new Promise(() => {}), close: async () => {} };
  const batcher = new Batcher(header, never, {
    flushIntervalMs: 60_000,
    maxBatchSamples: 10_000,
    maxQueuedSamples: 10,
  });
  for (let i = 0; i < 25; i++) batcher.add(sample(i));
  const queue = (batcher as unknown as { queue: WireSample[] }).queue.map((s) => s.ts);
  assert.equal(queue.at(-1), 24);
  assert.ok(
    queue.every((ts, i) => i === 0 || ts === queue[i - 1]! + 1),
    `kept a contiguous newest run: ${queue}`,
  );
});

test('concurrent sends to one file never interleave lines', async () => {
  const { file, cleanup } = tempFile();
  try {
    const exporter = new FileExporter(file);
    const big = Array.from({ length: 2000 }, (_, i) => sample(i));
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        exporter.send({
          ...header,
          batchId: String(i),
          agent: { ...header.agent, dropped: 0 },
          samples: big,
          counts: [],
          users: [],
        }),
      ),
    );
    const batches = readBatches(file);
    assert.equal(batches.length, 20);
    assert.deepEqual(
      batches.map((b) => b.batchId).sort((a, b) => Number(a) - Number(b)),
      Array.from({ length: 20 }, (_, i) => String(i)),
    );
  } finally {
    cleanup();
  }
});
