/**
 * The `file:` collector with a real file: each batch is one NDJSON line in
 * wire format v1 (SPEC §2, §4), lines never interleave, and a failed write
 * neither breaks later ones nor reaches the host app.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { Batcher } from '../../src/export/batcher';
import { FileExporter } from '../../src/export/file-exporter';
import type { WireBatch } from '../../src/export/wire';
import { assertWireBatch, HEADER, sample } from './support/wire';

let root: string;
before(() => {
  root = mkdtempSync(path.join(os.tmpdir(), 'ergometer-file-exporter-'));
});
after(() => rmSync(root, { recursive: true, force: true }));

let fileCount = 0;
function freshFile(): string {
  return path.join(root, `run-${fileCount++}`, 'samples.ndjson');
}

/** Every line of `file`, checked: it ends with a newline, and each line parses as a wire v1 batch. */
function readBatches(file: string): WireBatch[] {
  const text = readFileSync(file, 'utf8');
  assert.ok(text.endsWith('\n'), 'the last line is complete');
  return text
    .slice(0, -1)
    .split('\n')
    .map((line, i) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch (error) {
        assert.fail(`line ${i + 1} is not JSON (${(error as Error).message}): ${line.slice(0, 80)}…`);
      }
      return assertWireBatch(parsed);
    });
}

function batch(id: string, samples: number, pad = 0): WireBatch {
  return {
    ...HEADER,
    batchId: id,
    agent: { ...HEADER.agent, dropped: 0 },
    samples: Array.from({ length: samples }, (_, i) => sample(i, pad > 0 ? { user: 'u'.repeat(pad) } : {})),
    counts: [],
    users: [],
  };
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function lineCount(file: string): number {
  try {
    return readFileSync(file, 'utf8').split('\n').length - 1;
  } catch {
    return 0;
  }
}

describe('Batcher + FileExporter', () => {
  test('batches are NDJSON lines in wire format v1', async () => {
    const file = freshFile();
    const batcher = new Batcher(HEADER, new FileExporter(file), {
      flushIntervalMs: 60_000,
      maxBatchSamples: 3,
      maxQueuedSamples: 100,
    });
    batcher.add(sample(0, { backend: { db: 3.1, cache: 0.4, http: 0 }, flags: { new_ranker: 'on' }, user: 'h' }));
    for (let i = 1; i < 8; i++) batcher.add(sample(i));
    await batcher.flush();
    const batches = readBatches(file);
    assert.deepEqual(
      batches.map((b) => b.samples.map((s) => s.ts)),
      [
        [0, 1, 2],
        [3, 4, 5],
        [6, 7],
      ],
    );
    assert.deepEqual(batches[0]!.samples[0]!.flags, { new_ranker: 'on' });
    assert.equal(new Set(batches.map((b) => b.batchId)).size, 3, 'batchId unique per batch');
    assert.ok(batches.every((b) => b.agent.dropped === 0));
  });

  test('size-triggered: a full batch reaches the file without flush()', async () => {
    const file = freshFile();
    const batcher = new Batcher(HEADER, new FileExporter(file), {
      flushIntervalMs: 60_000,
      maxBatchSamples: 4,
      maxQueuedSamples: 100,
    });
    for (let i = 0; i < 4; i++) batcher.add(sample(i));
    await waitFor(() => lineCount(file) === 1, 'the size-triggered batch');
    assert.equal(readBatches(file)[0]!.samples.length, 4);
  });

  test('time-triggered: a lone sample reaches the file after flushIntervalMs without flush()', async () => {
    const file = freshFile();
    const batcher = new Batcher(HEADER, new FileExporter(file), {
      flushIntervalMs: 20,
      maxBatchSamples: 1000,
      maxQueuedSamples: 1000,
    });
    batcher.add(sample(42));
    await waitFor(() => lineCount(file) === 1, 'the time-triggered batch');
    assert.deepEqual(
      readBatches(file)[0]!.samples.map((s) => s.ts),
      [42],
    );
    assert.equal(batcher.queued, 0);
  });

  test('a batch that could not be written is counted in the next one', async () => {
    const file = freshFile();
    // Make the target a directory: appendFile fails with EISDIR.
    mkdirSync(file, { recursive: true });
    const batcher = new Batcher(HEADER, new FileExporter(file), {
      flushIntervalMs: 60_000,
      maxBatchSamples: 10,
      maxQueuedSamples: 100,
    });
    for (let i = 0; i < 5; i++) batcher.add(sample(i));
    await batcher.flush();
    rmSync(file, { recursive: true });
    batcher.add(sample(5));
    await batcher.flush();
    const [only, ...rest] = readBatches(file);
    assert.equal(rest.length, 0);
    assert.equal(only!.agent.dropped, 5);
    assert.deepEqual(
      only!.samples.map((s) => s.ts),
      [5],
    );
  });
});

describe('FileExporter', () => {
  test('lines from many concurrent sends never interleave, even lines larger than one write', async () => {
    const file = freshFile();
    const exporter = new FileExporter(file);
    // fs.appendFile writes large data in 512 KiB chunks: two unchained appends of
    // ~1.5 MB lines interleave their chunks, which is what the chaining prevents.
    const ids = Array.from({ length: 40 }, () => randomUUID());
    await Promise.all(ids.map((id, i) => exporter.send(batch(id, i % 5 === 0 ? 2000 : 3, i % 5 === 0 ? 700 : 0))));
    await exporter.close();
    const batches = readBatches(file);
    assert.deepEqual(
      batches.map((b) => b.batchId),
      ids,
      'one line per send, in the order of the calls',
    );
    assert.ok(Math.max(...batches.map((b) => JSON.stringify(b).length)) > 1_000_000, 'the large lines are large');
  });

  test('creates missing folders', async () => {
    const file = path.join(root, 'deep', 'er', 'still', 'samples.ndjson');
    await new FileExporter(file).send(batch(randomUUID(), 1));
    assert.equal(readBatches(file).length, 1);
  });

  test('appends: an existing file keeps its lines', async () => {
    const file = freshFile();
    await new FileExporter(file).send(batch(randomUUID(), 1));
    await new FileExporter(file).send(batch(randomUUID(), 2));
    assert.deepEqual(
      readBatches(file).map((b) => b.samples.length),
      [1, 2],
    );
  });

  test('a failed write rejects that send only; the next one is written', async () => {
    const file = freshFile();
    mkdirSync(file, { recursive: true });
    const exporter = new FileExporter(file);
    const first = randomUUID();
    await assert.rejects(exporter.send(batch(first, 1)), { code: 'EISDIR' });
    rmSync(file, { recursive: true });
    const second = randomUUID();
    await exporter.send(batch(second, 1));
    assert.deepEqual(
      readBatches(file).map((b) => b.batchId),
      [second],
    );
  });

  test('close() resolves after every pending write', async () => {
    const file = freshFile();
    const exporter = new FileExporter(file);
    for (let i = 0; i < 10; i++) exporter.send(batch(randomUUID(), 100)).catch(assert.fail);
    await exporter.close();
    assert.equal(readBatches(file).length, 10);
  });

  describe('fromUrl', () => {
    test('file:relative/path resolves against the working directory', () => {
      assert.equal(FileExporter.fromUrl('file:./samples.ndjson').file, path.resolve('samples.ndjson'));
      assert.equal(FileExporter.fromUrl('file:out/s.ndjson').file, path.resolve('out', 's.ndjson'));
    });

    test('file:///absolute/path, percent-encoding included', () => {
      const file = path.join(root, 'with space', 'samples.ndjson');
      assert.equal(FileExporter.fromUrl(pathToFileURL(file).href).file, file);
      assert.equal(FileExporter.fromUrl(`file:${file}`).file, file);
    });
  });
});
