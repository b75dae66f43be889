/**
 * Bulk ingest into ClickHouse through the ergometer store vs the server's own INSERT ceiling for the
 * same sample rows, side by side in one run against one server.
 *
 *   node bench/dist/src/clickhouse-ingest.js --url http://127.0.0.1:8123 [--server-pid PID] [--batches 200]
 *
 * The server must be running (tests start their own; here any ClickHouse you point at). With
 * --server-pid the server's CPU time is read from /proc and samples/s per server core reported.
 * It writes into a new database `ergometer_bench_<time>` and leaves it there (drop it by hand:
 * DROP DATABASE right after heavy inserts can block for minutes on 18.16).
 */
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { createClient } from '@clickhouse/client';
import { type IngestBatch, openClickHouseStore } from 'ergometer';
import { type BenchTable, renderTable } from './report';

const SAMPLES_PER_BATCH = 1000;
const ENDPOINTS = Array.from({ length: 20 }, (_, i) => `GET /route-${i}/:id`);
/** A fresh database per run. */
const DATABASE = `ergometer_bench_${Date.now()}`;
const CLOCK_TICKS_PER_S = 100;

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

/** A realistic agent batch: one process, 1000 samples over a minute, 20 endpoints, a third with a flag. */
function makeBatch(i: number, start: number): IngestBatch {
  const random = seeded(i);
  const samples: IngestBatch['samples'] = [];
  for (let k = 0; k < SAMPLES_PER_BATCH; k++) {
    const flags: Record<string, string> = {};
    if (random() < 0.33) flags.new_ranker = random() < 0.5 ? 'on' : 'off';
    samples.push({
      ts: start + Math.floor(random() * 60_000),
      endpoint: ENDPOINTS[Math.floor(random() * ENDPOINTS.length)] as string,
      status: 200,
      cost: Math.round(1e5 + random() * 1e7),
      wallMs: Math.round(random() * 10_000) / 100,
      db: Math.round(random() * 500) / 100,
      cache: Math.round(random() * 50) / 100,
      http: 0,
      flags,
      user: `u${Math.floor(random() * 1e6)}`,
      weight: 100,
      aborted: false,
    });
  }
  return {
    batchId: `bench-${i}-${start}`,
    service: 'api',
    host: `web-${i % 50}`,
    region: 'eu-1',
    commit: 'abc123',
    hostClass: 'xeon',
    metric: 'instructions',
    agentVersion: '0.1.0',
    runtime: 'node v20',
    dropped: 0,
    receivedAt: start + 61_000,
    samples,
    counts: ENDPOINTS.map((endpoint) => ({ minute: start, endpoint, requests: 5000 })),
    users: [{ minute: start, sketch: 'AAAA' }],
  };
}

function serverCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  // utime and stime are fields 14 and 15 of stat; after "pid (comm) " they are at 11 and 12.
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
}

interface Measured {
  samples: number;
  wallS: number;
  clientCpuS: number;
  serverCpuS: number;
}

async function measure(serverPid: number | undefined, samples: number, run: () => Promise<void>): Promise<Measured> {
  const cpu0 = process.cpuUsage();
  const server0 = serverCpuSeconds(serverPid);
  const t0 = performance.now();
  await run();
  const wallS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return {
    samples,
    wallS,
    clientCpuS: (cpu.user + cpu.system) / 1e6,
    serverCpuS: serverCpuSeconds(serverPid) - server0,
  };
}

function row(name: string, m: Measured): (string | number)[] {
  const perSecond = m.samples / m.wallS;
  return [
    name,
    m.samples,
    Math.round(perSecond),
    Number.isNaN(m.serverCpuS) ? '–' : Math.round(m.samples / m.serverCpuS),
    Math.round(m.samples / m.clientCpuS),
  ];
}

export async function benchClickHouseIngest(url: string, serverPid?: number, batchCount = 200): Promise<BenchTable> {
  const admin = createClient({ url });
  const store = openClickHouseStore({ url, database: DATABASE });
  await store.init();
  const start = Date.UTC(2026, 0, 5);
  const batches = (offset: number): IngestBatch[] =>
    Array.from({ length: batchCount }, (_, i) => makeBatch(offset + i, start + (i % 60) * 60_000));
  const total = batchCount * SAMPLES_PER_BATCH;
  const rows: (string | number)[][] = [];

  const sequential = batches(0);
  rows.push(
    row(
      'store.ingest(), one batch at a time',
      await measure(serverPid, total, async () => {
        for (const b of sequential) await store.ingest(b);
      }),
    ),
  );
  const concurrent = batches(1_000_000);
  rows.push(
    row(
      'store.ingest(), 4 batches in flight',
      await measure(serverPid, total, async () => {
        let next = 0;
        await Promise.all(
          Array.from({ length: 4 }, async () => {
            while (next < concurrent.length) await store.ingest(concurrent[next++] as IngestBatch);
          }),
        );
      }),
    ),
  );
  const grouped50 = batches(3_000_000);
  rows.push(
    row(
      'store.ingestMany(), 50 batches per call',
      await measure(serverPid, total, async () => {
        for (let i = 0; i < grouped50.length; i += 50) await store.ingestMany(grouped50.slice(i, i + 50));
      }),
    ),
  );
  const grouped = batches(2_000_000);
  rows.push(
    row(
      'store.ingestMany(), 10 batches per call',
      await measure(serverPid, total, async () => {
        for (let i = 0; i < grouped.length; i += 10) await store.ingestMany(grouped.slice(i, i + 10));
      }),
    ),
  );

  // The ceiling: the same sample rows, already encoded, into a bare MergeTree table with the same columns.
  await admin.command({
    query: `CREATE TABLE ${DATABASE}.raw_samples AS ${DATABASE}.samples_local ENGINE = MergeTree PARTITION BY day ORDER BY (service, ts)`,
  });
  // The same rows as the first store run, encoded by the server itself (RowBinary, as the store sends them).
  const columns =
    'batch_id, idx, service, commit, host, region, host_class, metric, ts, day, endpoint, status, cost, wall_ms, db_ms, cache_ms, http_ms, flag_keys, flag_values, user, weight, aborted';
  const names = columns;
  const blocks1k: Buffer[] = [];
  for (const b of sequential) {
    const result = await admin.exec({
      query: `SELECT ${columns} FROM ${DATABASE}.samples_local WHERE batch_id = '${b.batchId}' ORDER BY idx FORMAT RowBinary`,
    });
    const chunks: Buffer[] = [];
    for await (const chunk of result.stream) chunks.push(chunk as Buffer);
    blocks1k.push(Buffer.concat(chunks));
  }
  const insertRaw = async (body: Buffer): Promise<void> => {
    const result = await admin.exec({
      query: `INSERT INTO ${DATABASE}.raw_samples (${names}) FORMAT RowBinary`,
      values: Readable.from([body]),
    });
    for await (const _ of result.stream) {
      // drain
    }
  };
  rows.push(
    row(
      'raw INSERT … SELECT inside the server (no HTTP, no parsing)',
      await measure(serverPid, total, async () => {
        await admin.command({
          query: `INSERT INTO ${DATABASE}.raw_samples SELECT * FROM ${DATABASE}.samples_local WHERE batch_id LIKE 'bench-%' AND batch_id IN (SELECT batch_id FROM ${DATABASE}.batches_local) LIMIT ${total}`,
        });
      }),
    ),
  );
  rows.push(
    row(
      'raw INSERT, 1000 rows each (pre-encoded)',
      await measure(serverPid, total, async () => {
        for (const block of blocks1k) await insertRaw(block);
      }),
    ),
  );
  rows.push(
    row(
      'raw INSERT, 10 000 rows each (pre-encoded)',
      await measure(serverPid, total, async () => {
        for (let i = 0; i < blocks1k.length; i += 10) await insertRaw(Buffer.concat(blocks1k.slice(i, i + 10)));
      }),
    ),
  );
  const big = Buffer.concat(blocks1k);
  rows.push(
    row(
      `raw INSERT, ${total} rows at once (pre-encoded)`,
      await measure(serverPid, total, async () => {
        await insertRaw(big);
      }),
    ),
  );
  await store.close();
  await admin.close();
  return {
    title: 'ClickHouse bulk ingest (single node)',
    description:
      `${batchCount} batches of ${SAMPLES_PER_BATCH} samples (20 endpoints, a third with a flag). The store writes samples, ` +
      'per-batch minute aggregates, counts and users, plus the batch commit record; the raw INSERT writes only the ' +
      'same sample rows, pre-encoded, into a bare MergeTree table: the server ceiling for those rows.',
    columns: ['path', 'samples', 'samples/s (wall)', 'samples/s per server CPU s', 'samples/s per client CPU s'],
    rows,
  };
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const arg = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const url = arg('--url') ?? process.env.ERGOMETER_BENCH_CLICKHOUSE_URL;
  if (!url) {
    console.error('usage: clickhouse-ingest --url http://127.0.0.1:8123 [--server-pid PID] [--batches N]');
    process.exit(2);
  }
  const pid = arg('--server-pid');
  benchClickHouseIngest(url, pid === undefined ? undefined : Number(pid), Number(arg('--batches') ?? 200)).then(
    (table) => console.log(renderTable(table)),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
