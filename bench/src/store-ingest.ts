/**
 * Ingest into the embedded DuckDB store vs DuckDB's own bulk-insert ceiling, side by side in one
 * process: the same batches of 1000 samples go (a) through DuckDB's appender into a bare table of the
 * same columns (the ceiling: conversion from JS objects and commit included, nothing else), and (b)
 * through `DuckDbStore.ingest` / `ingestMany` (idempotency, batches/counts/users rows, aggregates).
 * Variants alternate over rounds on fresh files; the best round of each is kept. No HTTP here: that is
 * the server benchmark's job; this table says what the store leaves for it.
 *
 * Run alone: `npm run build && node bench/dist/src/store-ingest.js`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BIGINT,
  BOOLEAN,
  DOUBLE,
  DuckDBDataChunk,
  DuckDBInstance,
  type DuckDBType,
  type DuckDBValue,
  INTEGER,
  VARCHAR,
} from '@duckdb/node-api';
import { type IngestBatch, openDuckDbStore } from 'ergometer';
import { type BenchTable, renderTable } from './report';

const SAMPLES_PER_BATCH = 1000;
const BATCHES = Number(process.env.BENCH_QUICK ? 40 : 200);
const ROUNDS = Number(process.env.BENCH_QUICK ? 1 : 3);
const GROUP = 10;

function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Batches shaped like a busy service's: 20 endpoints, half the samples with one or two flags. */
function makeBatches(count: number, seed: number): IngestBatch[] {
  const random = seeded(seed);
  const endpoints = Array.from({ length: 20 }, (_, i) => `GET /route/${i}/:id`);
  const t0 = 1_764_201_600_000;
  return Array.from({ length: count }, (_, b) => {
    const start = t0 + b * 600;
    const minute = Math.floor(start / 60_000) * 60_000;
    return {
      batchId: `bench-${seed}-${b}`,
      service: 'api',
      host: `web-${b % 8}`,
      region: 'eu-1',
      commit: 'abc123',
      hostClass: 'xeon-8375c',
      metric: 'instructions',
      agentVersion: '0.1.0',
      runtime: process.version,
      dropped: 0,
      receivedAt: start,
      samples: Array.from({ length: SAMPLES_PER_BATCH }, () => {
        const r = random();
        const flags: Record<string, string> = {};
        if (r > 0.5) flags.new_ranker = r > 0.75 ? 'on' : 'off';
        if (r > 0.9) flags.cache_v2 = 'b';
        return {
          ts: start + Math.floor(random() * 1000),
          endpoint: endpoints[Math.floor(random() * endpoints.length)] as string,
          status: 200,
          cost: Math.round(1e6 * (1 + random() * 5)),
          wallMs: 1 + random() * 30,
          db: random() * 5,
          cache: random() < 0.5 ? 0 : random(),
          http: 0,
          flags,
          user: `u${Math.floor(random() * 1000)}`,
          weight: 100,
          aborted: false,
        };
      }),
      counts: endpoints.map((endpoint) => ({ minute, endpoint, requests: 5000 })),
      users: [{ minute, sketch: 'AAAAAAAAAAAAAAAAAAAAAAAA' }],
    };
  });
}

interface Measured {
  wallS: number;
  cpuS: number;
}

async function measure(task: () => Promise<void>): Promise<Measured> {
  const cpu = process.cpuUsage();
  const started = performance.now();
  await task();
  const used = process.cpuUsage(cpu);
  return { wallS: (performance.now() - started) / 1000, cpuS: (used.user + used.system) / 1e6 };
}

const CEILING_TYPES: DuckDBType[] = [
  BIGINT,
  BIGINT,
  VARCHAR,
  INTEGER,
  DOUBLE,
  DOUBLE,
  DOUBLE,
  DOUBLE,
  DOUBLE,
  VARCHAR,
  VARCHAR,
  DOUBLE,
  BOOLEAN,
];

/** DuckDB's appender into a bare table of the store's sample columns, `group` batches per commit. */
async function ceiling(dir: string, batches: IngestBatch[], group: number): Promise<Measured> {
  const instance = await DuckDBInstance.create(path.join(dir, 'ceiling.duckdb'), { threads: '1' });
  const connection = await instance.connect();
  await connection.run(`CREATE TABLE samples (batch_seq BIGINT, ts BIGINT, endpoint VARCHAR, status INTEGER,
    cost DOUBLE, wall_ms DOUBLE, db_ms DOUBLE, cache_ms DOUBLE, http_ms DOUBLE, flags VARCHAR, user_id VARCHAR,
    weight DOUBLE, aborted BOOLEAN)`);
  const result = await measure(async () => {
    for (let i = 0; i < batches.length; i += group) {
      await connection.run('BEGIN TRANSACTION');
      const appender = await connection.createAppender('samples');
      for (const [k, b] of batches.slice(i, i + group).entries()) {
        const columns: DuckDBValue[][] = CEILING_TYPES.map(() => []);
        for (const s of b.samples) {
          const row: DuckDBValue[] = [
            BigInt(i + k),
            BigInt(s.ts),
            s.endpoint,
            s.status,
            s.cost,
            s.wallMs,
            s.db,
            s.cache,
            s.http,
            JSON.stringify(s.flags),
            s.user,
            s.weight,
            s.aborted,
          ];
          for (let c = 0; c < row.length; c++) columns[c]?.push(row[c] as DuckDBValue);
        }
        const chunk = DuckDBDataChunk.create(CEILING_TYPES, b.samples.length);
        chunk.setColumns(columns);
        appender.appendDataChunk(chunk);
      }
      appender.flushSync();
      appender.closeSync();
      await connection.run('COMMIT');
    }
  });
  connection.closeSync();
  instance.closeSync();
  return result;
}

async function store(dir: string, batches: IngestBatch[], group: number): Promise<Measured> {
  const s = openDuckDbStore({ path: path.join(dir, 'store.duckdb'), threads: 1 });
  await s.init();
  const result = await measure(async () => {
    if (group === 1) for (const b of batches) await s.ingest(b);
    else if (group < 0) {
      // -n: n concurrent callers of ingest(), one batch each at a time, as an HTTP server would call it.
      let next = 0;
      const caller = async (): Promise<void> => {
        while (next < batches.length) await s.ingest(batches[next++] as IngestBatch);
      };
      await Promise.all(Array.from({ length: -group }, caller));
    } else for (let i = 0; i < batches.length; i += group) await s.ingestMany(batches.slice(i, i + group));
    // Aggregates still in memory are part of the cost of ingesting: write them inside the measure.
    await s.flushAggregates();
  });
  await s.close();
  return result;
}

const VARIANTS: ReadonlyArray<readonly [string, (dir: string, batches: IngestBatch[]) => Promise<Measured>]> = [
  [`DuckDB appender, bare table (ceiling), ${GROUP} batches per commit`, (d, b) => ceiling(d, b, GROUP)],
  ['DuckDB appender, bare table (ceiling), 1 batch per commit', (d, b) => ceiling(d, b, 1)],
  [`store.ingestMany, ${GROUP} batches per call`, (d, b) => store(d, b, GROUP)],
  ['store.ingest, 1 batch per call', (d, b) => store(d, b, 1)],
  [`store.ingest, 1 batch per call, ${GROUP} concurrent callers (group commit)`, (d, b) => store(d, b, -GROUP)],
];

/** The table for docs/benchmarks.md. */
export async function benchStoreIngest(): Promise<BenchTable> {
  const batches = makeBatches(BATCHES, 1);
  const best = new Map<string, Measured>();
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order each round so that no variant always runs first (or right after another).
    for (let v = 0; v < VARIANTS.length; v++) {
      const [name, run] = VARIANTS[(v + round) % VARIANTS.length] as (typeof VARIANTS)[number];
      const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-bench-store-'));
      try {
        const m = await run(dir, batches);
        const prev = best.get(name);
        if (!prev || m.cpuS < prev.cpuS) best.set(name, m);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  const samples = BATCHES * SAMPLES_PER_BATCH;
  const perCpu = (name: string): number => samples / (best.get(name) as Measured).cpuS;
  const ceilingGroup = perCpu(VARIANTS[0]?.[0] as string);
  const ceilingSingle = perCpu(VARIANTS[1]?.[0] as string);
  const rows = VARIANTS.map(([name], i) => {
    const m = best.get(name) as Measured;
    const reference = i === 2 || i === 4 ? ceilingGroup : i === 3 ? ceilingSingle : undefined;
    return [
      name,
      samples,
      Math.round(samples / m.wallS).toLocaleString('en-US'),
      Math.round(samples / m.cpuS).toLocaleString('en-US'),
      reference === undefined ? '' : `${Math.round((100 * (samples / m.cpuS)) / reference)}%`,
    ];
  });
  return {
    title: 'Store ingest: DuckDB store vs DuckDB bulk-insert ceiling',
    description:
      `${BATCHES} batches of ${SAMPLES_PER_BATCH} samples (20 endpoints, half with flags) into a fresh file per ` +
      `variant, DuckDB limited to one thread, best of ${ROUNDS} rotating rounds. Process CPU time (all threads) ` +
      'per sample is the per-core number; wall time includes the WAL fsync of each commit. The ceiling appends ' +
      'the same columns to a bare table; the store also writes batch, counts and users rows, rolls up aggregates and writes them.',
    columns: ['variant', 'samples', 'samples/s (wall)', 'samples per CPU-second', 'of the ceiling (same commits)'],
    rows,
  };
}

if (require.main === module) {
  benchStoreIngest().then(
    (table) => console.log(renderTable(table)),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
