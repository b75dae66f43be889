/**
 * Ingest benchmark (issue 4): samples per second ingested over HTTP into the collector, per core
 * of the collector process, for DuckDB and ClickHouse, next to each backend's own bulk-insert
 * ceiling measured in the same run; then `GET /v1/endpoints` latency over a store of 10 M samples.
 *
 * - HTTP: the real collector (ingest/server.ts → createCollector) runs in a child process; this
 *   process is the client, sending pre-generated gzip batches of 1000 samples (varied batchIds)
 *   over keep-alive connections. CPU of the collector comes from /proc/<pid>/stat, read before the
 *   load and after it plus the settle time in which the store writes the deferred aggregates.
 * - Store ceiling: the same batches, pre-validated (IngestBatch objects), through the store's own
 *   `ingestMany` in groups as large as the collector's group commits, in this process
 *   (process.cpuUsage covers DuckDB's threads).
 * - Raw ceiling: the same sample rows, pre-encoded, through a bare DuckDB appender (the store's
 *   column-wise writer) into a table of the samples schema / one ClickHouse INSERT … FORMAT TabSeparated per group into the samples table.
 * - ClickHouse server CPU is read from /proc for the server the test harness started.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { gunzipSync } from 'node:zlib';
import { DuckDBInstance } from '@duckdb/node-api';
import {
  appendColumnar,
  DEFAULT_CHECKPOINT_THRESHOLD,
  type DuckDbColumn,
  type IngestBatch,
  jsonDepthExceeds,
  openClickHouseStore,
  openDuckDbStore,
  resolveLimits,
  rollUpSamples,
  type Store,
  sampleColumns,
  validateBatch,
} from 'ergometer';
import type { ServerConfig } from './ingest/server';
import {
  BATCH_SPAN_MS,
  COMMITS,
  FLEET_HOSTS,
  fleetBatchStart,
  gzipBody,
  makeWireBatch,
  SAMPLES_PER_BATCH,
  SERVICE,
  settleStore,
  toIngestBatch,
} from './ingest/workload';
import type { BenchTable } from './report';

const QUICK = process.env.BENCH_QUICK === '1';
/** Batches sent per measured run (1000 samples each). */
const BATCHES = QUICK ? 60 : 400;
const WARMUP_BATCHES = QUICK ? 10 : 40;
/** Concurrent uploads (agents) and the group size of the store ceiling (≈ the collector's group commits). */
const CONCURRENCY = 16;
/** Rounds of the DuckDB rows (HTTP, store ceiling, raw appender: one run of each in turn), pooled. */
const DUCKDB_ROUNDS = QUICK ? 1 : 5;
/** Samples in the store for the /v1/endpoints latency measurement. */
const FILL_SAMPLES = Number(process.env.BENCH_ENDPOINTS_SAMPLES ?? (QUICK ? 200_000 : 10_000_000));
const LATENCY_REQUESTS = QUICK ? 40 : 200;
/** The collector writes deferred aggregates at least every 5 s: CPU is counted until then. */
const SETTLE_MS = 6_000;
const INGEST_TOKEN = 'bench-ingest-token';
export const READ_TOKEN = 'bench-read-token';
const CLK_TCK = 100;
const REPO = path.join(__dirname, '..', '..', '..');
const SERVER_JS = path.join(__dirname, 'ingest', 'server.js');

interface ClickHouseHarness {
  startClickHouse(): Promise<{ url: string; dir: string; stop(): Promise<void> }>;
}

/** CPU seconds (user + system, all threads) a process has used, from /proc/<pid>/stat. */
export function procCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

function selfCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/** The pid of the ClickHouse server whose command line names its temp dir. */
function clickHousePid(dir: string): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(dir)) return Number(entry);
    } catch {
      // The process ended meanwhile.
    }
  }
  throw new Error(`no ClickHouse process found for ${dir}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface RunningCollector {
  child: ChildProcess;
  port: number;
  /** Has the collector do now the work its store defers (see server.ts) and waits until it is done. */
  settle(): Promise<void>;
  stop(): Promise<void>;
}

export async function startCollector(
  config: Omit<ServerConfig, 'ingestToken' | 'readToken'>,
): Promise<RunningCollector> {
  const execArgv = process.env.BENCH_INGEST_CPU_PROF
    ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_INGEST_CPU_PROF}`]
    : [];
  const child = spawn(
    process.execPath,
    [...execArgv, SERVER_JS, JSON.stringify({ ...config, ingestToken: INGEST_TOKEN, readToken: READ_TOKEN })],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`bench collector exited with ${code} before listening`)));
    lines.once('line', (line) => resolve((JSON.parse(line) as { port: number }).port));
  });
  return {
    child,
    port,
    async settle() {
      const settled = new Promise<void>((resolve, reject) => {
        const onLine = (line: string): void => {
          if (!line.includes('"settled"')) return;
          lines.off('line', onLine);
          const answer = JSON.parse(line) as { settled: boolean; error?: string };
          if (answer.settled) resolve();
          else reject(new Error(`bench collector could not settle its store: ${answer.error}`));
        };
        lines.on('line', onLine);
      });
      child.kill('SIGUSR2');
      await settled;
    },
    async stop() {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * Keep-alive connections for one burst of requests. A fresh agent per burst: a socket left idle
 * through a settle pause outlives the collector's keep-alive timeout and would be reset on reuse.
 */
let agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
function freshAgent(): void {
  agent.destroy();
  agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
}

/**
 * One HTTP request; retried when a kept-alive socket was closed by the collector meanwhile
 * (safe: a POST /v1/samples retry is deduplicated by its batchId).
 */
async function request(
  port: number,
  method: string,
  pathAndQuery: string,
  headers: Record<string, string | number>,
  body?: Buffer,
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await requestOnce(port, method, pathAndQuery, headers, body);
    } catch (error) {
      // Every idle socket of the pool may be stale: try each before giving up.
      if ((error as NodeJS.ErrnoException).code !== 'ECONNRESET' || attempt > CONCURRENCY) throw error;
    }
  }
}

function requestOnce(
  port: number,
  method: string,
  pathAndQuery: string,
  headers: Record<string, string | number>,
  body?: Buffer,
): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: pathAndQuery, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends every body once with CONCURRENCY uploads in flight; retries 429/503 after a short pause. */
async function sendAll(port: number, bodies: readonly Buffer[]): Promise<number> {
  freshAgent();
  let next = 0;
  let accepted = 0;
  const worker = async (): Promise<void> => {
    while (next < bodies.length) {
      const body = bodies[next++] as Buffer;
      for (;;) {
        const res = await request(
          port,
          'POST',
          '/v1/samples',
          {
            authorization: `Bearer ${INGEST_TOKEN}`,
            'content-type': 'application/json',
            'content-encoding': 'gzip',
            'content-length': body.length,
          },
          body,
        );
        if (res.status === 200) {
          accepted += (JSON.parse(res.body) as { accepted: number }).accepted;
          break;
        }
        if (res.status !== 429 && res.status !== 503) throw new Error(`POST /v1/samples: ${res.status} ${res.body}`);
        await sleep(20);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return accepted;
}

interface Measured {
  samples: number;
  wallS: number;
  /** CPU of the ingesting process: the collector for HTTP, this process for the ceilings. */
  cpuS: number;
  /** CPU of the ClickHouse server over the same window (ClickHouse only). */
  dbCpuS?: number;
  /** Batches per store write (the collector's group commits; the ceiling's ingestMany calls). */
  groupBatches?: number;
  /** Per-minute aggregate rows the measured batches make, per 1000 samples (aggregateRowsPer1000). */
  aggregateRows?: number;
}

interface HttpOptions {
  /** ClickHouse server process, whose CPU is read over the same window. */
  dbPid?: number;
  samplesPerBatch?: number;
  schedule?: Schedule;
  /** Wire format of the bodies: 2, as the agent sends them, or 1, as agents before it did. */
  wire?: 1 | 2;
}

/** Store writes (group commits) the collector has made so far, from its /metrics. */
async function storeWrites(port: number): Promise<number> {
  const res = await request(port, 'GET', '/metrics', {});
  const match = /^ergometer_insert_duration_seconds_count (\d+)/m.exec(res.body);
  return Number(match?.[1] ?? Number.NaN);
}

/**
 * How the batches of a run are placed in time. `fleet`: the workload's fleet as it sends, each host one
 * batch per 10 s (workload.ts, fleetBatchStart), so a run holds the traffic of consecutive seconds.
 * `spread`: consecutive batches 5 s apart whatever the fleet (a run of 400 covers 33 minutes, as a
 * backfill of older data would): ~30 times the fleet's aggregate rows per sample.
 */
type Schedule = 'fleet' | 'spread';

/** Time between two consecutive batches of the `spread` schedule. */
function spreadStepMs(count: number): number {
  return Math.min(5_000, 3_000_000 / count);
}

/**
 * Wire batches for one run: fresh ids (`run` is part of the seed), timestamps in the last hour (the
 * collector accepts up to an hour ahead of its clock, 30 days back). `first` is the index of the first
 * batch in the fleet's sequence: a run's measured batches go on from its warm-up's.
 */
function wireBatches(
  run: number,
  count: number,
  { samplesPerBatch = SAMPLES_PER_BATCH, first = 0, schedule = 'fleet' as Schedule } = {},
): ReturnType<typeof makeWireBatch>[] {
  const start = Date.now() - 3_600_000;
  const spreadMs = spreadStepMs(count);
  return Array.from({ length: count }, (_, k) => {
    const i = first + k;
    const startMs = schedule === 'fleet' ? fleetBatchStart(i, start) : start + Math.floor(k * spreadMs);
    return makeWireBatch(run, i, startMs, samplesPerBatch);
  });
}

/**
 * Rows of per-minute aggregates the batches make, per 1000 samples: the store's own roll-up
 * (rollUpSamples: per endpoint × minute, once for all flags and once per flag variant) of each batch,
 * keyed also by what a batch shares (service, commit, metric, host class), counted once across batches.
 * What the store's aggregate writes and their merging cost in proportion to, where samples cost per sample.
 */
function aggregateRowsPer1000(batches: readonly ReturnType<typeof makeWireBatch>[]): number {
  const keys = new Set<string>();
  let samples = 0;
  for (const wire of batches) {
    const b = toIngestBatch(wire);
    const group = `${b.service}\t${b.commit}\t${b.metric}\t${b.hostClass}`;
    for (const row of rollUpSamples(b.samples)) {
      keys.add(`${group}\t${row.endpoint}\t${row.flagKey}\t${row.flagVariant}\t${row.minute}`);
    }
    samples += b.samples.length;
  }
  return (1000 * keys.size) / samples;
}

/** Samples per batch of a small agent (1 % of 200 requests/s over the 10 s flush interval). */
export const SMALL_BATCH_SAMPLES = 20;

async function measureHttp(
  config: Omit<ServerConfig, 'ingestToken' | 'readToken'>,
  run: number,
  { dbPid, samplesPerBatch = SAMPLES_PER_BATCH, schedule = 'fleet' as Schedule, wire = 2 }: HttpOptions = {},
): Promise<Measured> {
  // Small batches: a fifth of the samples, in many more requests.
  const scale = samplesPerBatch === SAMPLES_PER_BATCH ? 1 : SAMPLES_PER_BATCH / samplesPerBatch / 5;
  const warmCount = Math.round(WARMUP_BATCHES * scale);
  const warm = wireBatches(run * 10 + 1, warmCount, { samplesPerBatch, schedule }).map((w) => gzipBody(w, wire));
  const wires = wireBatches(run * 10 + 2, Math.round(BATCHES * scale), { samplesPerBatch, schedule, first: warmCount });
  const aggregateRows = aggregateRowsPer1000(wires);
  const bodies = wires.map((w) => gzipBody(w, wire));
  const collector = await startCollector(config);
  try {
    await sendAll(collector.port, warm);
    await collector.settle();
    await sleep(SETTLE_MS);
    freshAgent();
    const cpu0 = procCpuSeconds(collector.child.pid as number);
    const db0 = dbPid === undefined ? 0 : procCpuSeconds(dbPid);
    const writes0 = await storeWrites(collector.port);
    const t0 = performance.now();
    const samples = await sendAll(collector.port, bodies);
    const wallS = (performance.now() - t0) / 1000;
    const writes = (await storeWrites(collector.port)) - writes0;
    // The work these samples leave behind is theirs too: pending aggregates, their merging, the checkpoint.
    await collector.settle();
    await sleep(SETTLE_MS);
    const cpuS = procCpuSeconds(collector.child.pid as number) - cpu0;
    const out: Measured = { samples, wallS, cpuS, groupBatches: bodies.length / writes, aggregateRows };
    if (dbPid !== undefined) out.dbCpuS = procCpuSeconds(dbPid) - db0;
    return out;
  } finally {
    await collector.stop();
  }
}

/** The store's own ceiling: pre-validated batches through ingestMany, CONCURRENCY batches a call. */
async function measureStore(store: Store, run: number, dbPid?: number): Promise<Measured> {
  const warm = wireBatches(run * 10 + 1, WARMUP_BATCHES).map(toIngestBatch);
  const batches = wireBatches(run * 10 + 2, BATCHES, { first: WARMUP_BATCHES }).map(toIngestBatch);
  const ingestGroups = async (list: IngestBatch[]): Promise<void> => {
    for (let i = 0; i < list.length; i += CONCURRENCY) await store.ingestMany(list.slice(i, i + CONCURRENCY));
    // The work these batches leave behind, as the collector's settle() does.
    await settleStore(store);
  };
  await ingestGroups(warm);
  const cpu0 = selfCpuSeconds();
  const db0 = dbPid === undefined ? 0 : procCpuSeconds(dbPid);
  const t0 = performance.now();
  await ingestGroups(batches);
  const wallS = (performance.now() - t0) / 1000;
  const out: Measured = {
    samples: batches.length * SAMPLES_PER_BATCH,
    wallS,
    cpuS: selfCpuSeconds() - cpu0,
    groupBatches: CONCURRENCY,
  };
  if (dbPid !== undefined) out.dbCpuS = procCpuSeconds(dbPid) - db0;
  return out;
}

/**
 * Absolute DuckDB ceiling: the same sample rows, already in column arrays (typed arrays for the
 * numbers), through a bare appender with the store's column-wise writer, one transaction per group.
 */
async function measureRawDuckDb(dir: string, run: number): Promise<Measured> {
  const batches = wireBatches(run * 10 + 2, BATCHES, { first: WARMUP_BATCHES }).map(toIngestBatch);
  // Built by the store's own code, before the clock starts: the ceiling times the append alone.
  const groups: DuckDbColumn[][] = [];
  for (let g = 0; g < batches.length; g += CONCURRENCY) {
    groups.push(sampleColumns(batches.slice(g, g + CONCURRENCY).map((batch, k) => ({ batch, seq: g + k + 1 }))));
  }
  // The store's checkpoint threshold: the same DuckDB configuration as the rows above.
  const instance = await DuckDBInstance.create(path.join(dir, `raw-${run}.duckdb`), {
    checkpoint_threshold: DEFAULT_CHECKPOINT_THRESHOLD,
  });
  const connection = await instance.connect();
  await connection.run(`CREATE TABLE samples (batch_seq BIGINT NOT NULL, ts BIGINT NOT NULL, endpoint VARCHAR NOT NULL,
    status INTEGER NOT NULL, cost DOUBLE NOT NULL, wall_ms DOUBLE NOT NULL, db_ms DOUBLE NOT NULL, cache_ms DOUBLE NOT NULL,
    http_ms DOUBLE NOT NULL, flags VARCHAR NOT NULL, user_id VARCHAR NOT NULL, weight DOUBLE NOT NULL, aborted BOOLEAN NOT NULL)`);
  const cpu0 = selfCpuSeconds();
  const t0 = performance.now();
  for (const columns of groups) {
    await connection.run('BEGIN TRANSACTION');
    const appender = await connection.createAppender('samples');
    appendColumnar(appender, columns);
    appender.flushSync();
    appender.closeSync();
    await connection.run('COMMIT');
  }
  // Into the file, compressed: the store's rows count their checkpoint too.
  await connection.run('CHECKPOINT');
  const wallS = (performance.now() - t0) / 1000;
  const cpuS = selfCpuSeconds() - cpu0;
  connection.closeSync();
  instance.closeSync();
  return { samples: batches.length * SAMPLES_PER_BATCH, wallS, cpuS };
}

function tsvString(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n');
}

function tsvArray(values: string[]): string {
  return `[${values.map((v) => `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`).join(',')}]`;
}

/** Absolute ClickHouse ceiling: the same sample rows, pre-encoded as TSV, one INSERT per group. */
async function measureRawClickHouse(url: string, database: string, run: number, dbPid: number): Promise<Measured> {
  const batches = wireBatches(run * 10 + 2, BATCHES, { first: WARMUP_BATCHES }).map(toIngestBatch);
  const bodies: string[] = [];
  for (let g = 0; g < batches.length; g += CONCURRENCY) {
    const lines: string[] = [];
    for (const b of batches.slice(g, g + CONCURRENCY)) {
      b.samples.forEach((s, idx) => {
        const day = new Date(s.ts).toISOString().slice(0, 10);
        lines.push(
          [
            tsvString(b.batchId),
            idx,
            tsvString(b.service),
            tsvString(b.commit),
            tsvString(b.host),
            tsvString(b.region),
            tsvString(b.hostClass),
            b.metric,
            s.ts,
            day,
            tsvString(s.endpoint),
            s.status,
            s.cost,
            s.wallMs,
            s.db,
            s.cache,
            s.http,
            tsvArray(Object.keys(s.flags)),
            tsvArray(Object.values(s.flags)),
            tsvString(s.user),
            s.weight,
            s.aborted ? 1 : 0,
          ].join('\t'),
        );
      });
    }
    bodies.push(`${lines.join('\n')}\n`);
  }
  // The single-node store writes the `_local` tables directly (schema.ts).
  const query = encodeURIComponent(`INSERT INTO ${database}.samples_local FORMAT TabSeparated`);
  const cpu0 = selfCpuSeconds();
  const db0 = procCpuSeconds(dbPid);
  const t0 = performance.now();
  for (const body of bodies) {
    const res = await fetch(`${url}/?query=${query}`, { method: 'POST', body });
    if (!res.ok) throw new Error(`raw ClickHouse INSERT: ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  }
  const wallS = (performance.now() - t0) / 1000;
  return {
    samples: batches.length * SAMPLES_PER_BATCH,
    wallS,
    cpuS: selfCpuSeconds() - cpu0,
    dbCpuS: procCpuSeconds(dbPid) - db0,
  };
}

export function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** CPU µs per sample of a measurement. */
function microsPerSample(m: Measured): number {
  return (1e6 * m.cpuS) / m.samples;
}

/** Runs of one variant taken together: samples, wall and CPU time summed, batches per write weighted by samples. */
function pooled(runs: readonly Measured[]): Measured {
  const samples = runs.reduce((sum, m) => sum + m.samples, 0);
  return {
    samples,
    wallS: runs.reduce((sum, m) => sum + m.wallS, 0),
    cpuS: runs.reduce((sum, m) => sum + m.cpuS, 0),
    groupBatches: runs.every((m) => m.groupBatches !== undefined)
      ? runs.reduce((sum, m) => sum + (m.groupBatches as number) * m.samples, 0) / samples
      : undefined,
    aggregateRows: runs.every((m) => m.aggregateRows !== undefined)
      ? runs.reduce((sum, m) => sum + (m.aggregateRows as number) * m.samples, 0) / samples
      : undefined,
  };
}

function row(backend: string, pathName: string, m: Measured, reference?: Measured): (string | number)[] {
  const perCpu = m.samples / m.cpuS;
  const share = reference === undefined ? '—' : `${fmt((100 * perCpu) / (reference.samples / reference.cpuS))} %`;
  return [
    backend,
    pathName,
    fmt(m.samples),
    fmt(m.samples / m.wallS),
    fmt(m.cpuS, 2),
    fmt(perCpu),
    m.dbCpuS === undefined ? '—' : fmt(m.samples / m.dbCpuS),
    m.groupBatches === undefined ? '—' : fmt(m.groupBatches, 1),
    share,
  ];
}

/** Bytes on disk of every table of `database` per row of its samples table, after merging the samples. */
async function clickHouseBytesPerSample(url: string, database: string): Promise<number> {
  const query = async (text: string): Promise<string> => {
    const res = await fetch(`${url}/?query=${encodeURIComponent(text)}`, { method: 'POST' });
    const body = await res.text();
    if (!res.ok) throw new Error(`ClickHouse: ${res.status} ${body}`);
    return body.trim();
  };
  await query(`OPTIMIZE TABLE ${database}.samples_local FINAL`);
  const bytes = Number(
    await query(`SELECT sum(bytes_on_disk) FROM system.parts WHERE database = '${database}' AND active`),
  );
  const rows = Number(
    await query(
      `SELECT sum(rows) FROM system.parts WHERE database = '${database}' AND table = 'samples_local' AND active`,
    ),
  );
  return bytes / rows;
}

function loadHarness(): ClickHouseHarness | undefined {
  const file = path.join(REPO, 'packages', 'ergometer', 'dist', 'test', 'support', 'clickhouse.js');
  if (!existsSync(file)) return undefined;
  // The harness lives in the ergometer package's compiled tests (outside this package's rootDir).
  return require(file) as ClickHouseHarness;
}

/** Results the latency and scaling tables reuse. */
export interface IngestFindings {
  duckdbBytesPerSample?: number;
  clickhouseBytesPerSample?: number;
}
export const findings: IngestFindings = {};

/** Side-by-side ingest throughput over HTTP vs each backend's ceilings. */
export async function benchIngest(): Promise<BenchTable> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-bench-ingest-'));
  const rows: (string | number)[][] = [];
  const notes: string[] = [];
  try {
    // Rounds of the three DuckDB rows in turn, each pooled over its runs: this VM's speed drifts by
    // up to 1.5x within an hour, so a ceiling measured once, minutes away from the HTTP runs, would
    // move their ratio by as much as any change to the collector.
    const duckHttpRuns: Measured[] = [];
    const duckStoreRuns: Measured[] = [];
    const duckRawRuns: Measured[] = [];
    const duckSpreadRuns: Measured[] = [];
    const duckV1Runs: Measured[] = [];
    for (let round = 0; round < DUCKDB_ROUNDS; round++) {
      const run = 1 + 10 * round;
      process.stderr.write(
        `ingest: DuckDB over HTTP (wire format 2, 1, spread out), store.ingestMany, raw appender (round ${round + 1} of ${DUCKDB_ROUNDS})\n`,
      );
      duckHttpRuns.push(await measureHttp({ backend: 'duckdb', db: path.join(dir, `http-${round}.duckdb`) }, run));
      duckV1Runs.push(
        await measureHttp({ backend: 'duckdb', db: path.join(dir, `v1-${round}.duckdb`) }, run, { wire: 1 }),
      );
      duckSpreadRuns.push(
        await measureHttp({ backend: 'duckdb', db: path.join(dir, `spread-${round}.duckdb`) }, run, {
          schedule: 'spread',
        }),
      );
      const store = openDuckDbStore({ path: path.join(dir, `store-${round}.duckdb`) });
      await store.init();
      try {
        duckStoreRuns.push(await measureStore(store, run));
      } finally {
        await store.close();
      }
      duckRawRuns.push(await measureRawDuckDb(dir, run));
    }
    const duckHttp = pooled(duckHttpRuns);
    const duckStore = pooled(duckStoreRuns);
    const duckRaw = pooled(duckRawRuns);
    const duckSpread = pooled(duckSpreadRuns);
    const duckV1 = pooled(duckV1Runs);
    let duckSmall: Measured | undefined;
    if (process.env.BENCH_INGEST_SMALL !== '0') {
      process.stderr.write(`ingest: DuckDB over HTTP, ${SMALL_BATCH_SAMPLES}-sample batches\n`);
      duckSmall = await measureHttp({ backend: 'duckdb', db: path.join(dir, 'small.duckdb') }, 3, {
        samplesPerBatch: SMALL_BATCH_SAMPLES,
      });
    }
    rows.push(row('DuckDB', 'HTTP → collector (gzip JSON wire format 2, validate, group commit)', duckHttp, duckStore));
    rows.push(
      row('DuckDB', 'HTTP → collector, wire format 1 (samples as objects: agents before v2)', duckV1, duckStore),
    );
    const spreadMinutes = fmt((BATCHES * spreadStepMs(BATCHES)) / 60_000);
    rows.push(
      row('DuckDB', `HTTP → collector, the same batches spread over ${spreadMinutes} minutes (a backfill)`, duckSpread),
    );
    if (duckSmall !== undefined) {
      rows.push(
        row('DuckDB', `HTTP → collector, small batches of ${SMALL_BATCH_SAMPLES} samples`, duckSmall, duckStore),
      );
    }
    rows.push(row('DuckDB', 'store.ingestMany (pre-validated batches)', duckStore, duckRaw));
    rows.push(row('DuckDB', 'raw appender, samples table only (ceiling)', duckRaw));
    const duckPerCpu = duckHttp.samples / duckHttp.cpuS;
    notes.push(
      `Time: the measured batches are ${fmt(((BATCHES / FLEET_HOSTS) * BATCH_SPAN_MS) / 1000)} s of the workload fleet's traffic ` +
        `(${FLEET_HOSTS} hosts, each sending a batch of the last ${BATCH_SPAN_MS / 1000} s every ${BATCH_SPAN_MS / 1000} s), ` +
        `${fmt(duckHttp.aggregateRows ?? Number.NaN, 1)} per-minute aggregate rows per 1000 samples. ` +
        `Spread over ${spreadMinutes} minutes, the same batches make ${fmt(duckSpread.aggregateRows ?? Number.NaN, 1)}: aggregate rows are paid per row (written, then merged with the partial rows of the same minute), ` +
        `so a sample costs more where each minute holds fewer samples. A collector that ingests 100,000 samples/s of live traffic gets 6,000,000 samples a minute, ` +
        'and with this service mix fewer aggregate rows per sample than either.',
    );
    notes.push(
      `DuckDB, round by round, CPU µs per sample: over HTTP ${duckHttpRuns.map((m) => fmt(microsPerSample(m), 2)).join(', ')}; ` +
        `store.ingestMany ${duckStoreRuns.map((m) => fmt(microsPerSample(m), 2)).join(', ')}; ` +
        `wire format 1 ${duckV1Runs.map((m) => fmt(microsPerSample(m), 2)).join(', ')}; ` +
        `HTTP's share of the ceiling in each round ${duckHttpRuns.map((m, i) => `${fmt((100 * microsPerSample(duckStoreRuns[i] as Measured)) / microsPerSample(m))} %`).join(', ')}.`,
    );
    notes.push(
      `DuckDB over HTTP: ${fmt(duckPerCpu)} samples per collector CPU-second = ${fmt((100 * duckPerCpu) / (duckStore.samples / duckStore.cpuS), 1)} % of the store's own ceiling ` +
        `and ${fmt((100 * duckPerCpu) / (duckRaw.samples / duckRaw.cpuS), 1)} % of the raw appender (goals: ≥ 50 % of the ceiling, ≥ 100,000 samples/s/core).`,
    );

    const harness = process.env.BENCH_INGEST_CLICKHOUSE === '0' ? undefined : loadHarness();
    if (harness === undefined) {
      notes.push(
        'ClickHouse: not measured (BENCH_INGEST_CLICKHOUSE=0, or the test harness is not compiled: `npx tsc -b`).',
      );
    } else {
      let server: Awaited<ReturnType<ClickHouseHarness['startClickHouse']>> | undefined;
      try {
        server = await harness.startClickHouse();
        const pid = clickHousePid(server.dir);
        process.stderr.write('ingest: ClickHouse over HTTP\n');
        const chHttp = await measureHttp({ backend: 'clickhouse', url: server.url, database: 'bench_http' }, 2, {
          dbPid: pid,
        });
        process.stderr.write('ingest: ClickHouse store.ingestMany\n');
        const chStoreHandle = openClickHouseStore({ url: server.url, database: 'bench_store' });
        await chStoreHandle.init();
        let chStore: Measured;
        try {
          chStore = await measureStore(chStoreHandle, 2, pid);
        } finally {
          await chStoreHandle.close();
        }
        rows.push(
          row('ClickHouse', 'HTTP → collector (gzip JSON wire format 2, validate, RowBinary INSERTs)', chHttp, chStore),
        );
        rows.push(row('ClickHouse', 'store.ingestMany (pre-validated batches)', chStore));
        process.stderr.write('ingest: ClickHouse raw INSERT\n');
        const rawStore = openClickHouseStore({ url: server.url, database: 'bench_raw' });
        await rawStore.init();
        await rawStore.close();
        const chRaw = await measureRawClickHouse(server.url, 'bench_raw', 2, pid);
        rows.push(row('ClickHouse', 'raw INSERT … FORMAT TabSeparated, samples table only (ceiling)', chRaw));
        const chPerCpu = chHttp.samples / chHttp.cpuS;
        const bytesPerSample = await clickHouseBytesPerSample(server.url, 'bench_http');
        findings.clickhouseBytesPerSample = bytesPerSample;
        notes.push(
          `ClickHouse disk: ${fmt(bytesPerSample, 1)} bytes per stored sample (active parts of every table of the HTTP run's database, after OPTIMIZE … FINAL of the samples, ÷ samples stored).`,
        );
        notes.push(
          `ClickHouse over HTTP: ${fmt(chPerCpu)} samples per collector CPU-second = ${fmt((100 * chPerCpu) / (chStore.samples / chStore.cpuS))} % of the store's own ceiling (client side); ` +
            `the ClickHouse server spent ${fmt(chHttp.samples / (chHttp.dbCpuS ?? 1))} samples per its CPU-second on the collector's inserts and ${fmt(chRaw.samples / (chRaw.dbCpuS ?? 1))} on the raw INSERT.`,
        );
      } catch (error) {
        notes.push(`ClickHouse: not measured (${(error as Error).message.split('\n')[0]}).`);
      } finally {
        await server?.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    title: 'Ingest: samples per second per core over HTTP vs the backend ceilings',
    description:
      `${BATCHES} gzip batches of ${SAMPLES_PER_BATCH} realistic samples in wire format 2, as the agent sends them (one service, 30 endpoints with a skewed mix, flags on 60 %, ` +
      `user ids, per-minute counts and a users sketch; bench/src/ingest/workload.ts), ${CONCURRENCY} uploads in flight, after ${WARMUP_BATCHES} warm-up batches; ` +
      `each DuckDB row pools ${DUCKDB_ROUNDS} run(s), taken in rounds of one run of each row in turn (the HTTP runs each in a fresh collector process, the others on fresh files). ` +
      'The collector (createCollector, as in `ergometer serve`) runs in its own process; its CPU time (user + system, all threads, /proc) is counted ' +
      'until its store has done the work the samples left behind (pending aggregates written, partial aggregate rows merged, the write-ahead log checkpointed into the file) ' +
      `and ${SETTLE_MS / 1000} s more. "Ceiling" rows run in the benchmark process on the same rows and end with the same work: ` +
      `the store's \`ingestMany\` with ${CONCURRENCY} batches a call, and a bare DuckDB appender / ClickHouse INSERT of the sample rows alone. ` +
      '"% of ceiling" compares samples per CPU-second with the row below it.',
    columns: [
      'backend',
      'path',
      'samples',
      'samples/s (wall)',
      'CPU s',
      'samples per CPU-s',
      'samples per ClickHouse CPU-s',
      'batches per store write',
      '% of ceiling',
    ],
    rows,
    notes,
  };
}

async function fillStore(store: Store, samples: number): Promise<number> {
  const batchCount = Math.ceil(samples / SAMPLES_PER_BATCH);
  // One day of traffic ending an hour ago.
  const start = Date.now() - 25 * 3_600_000;
  const step = (24 * 3_600_000) / batchCount;
  const t0 = performance.now();
  for (let g = 0; g < batchCount; g += 20) {
    const group: IngestBatch[] = [];
    for (let i = g; i < Math.min(batchCount, g + 20); i++)
      group.push(toIngestBatch(makeWireBatch(7, i, start + Math.floor(i * step))));
    await store.ingestMany(group);
    if (g % 1000 === 0) process.stderr.write(`fill: ${g * SAMPLES_PER_BATCH} samples\n`);
  }
  return (performance.now() - t0) / 1000;
}

function duBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    total += entry.isDirectory() ? duBytes(file) : statSync(file).size;
  }
  return total;
}

/** One row of the latency table: a collector over the filled store, the latency of its /v1/endpoints. */
async function latencyRow(
  label: string,
  config: Omit<ServerConfig, 'ingestToken' | 'readToken'>,
  fillSeconds: number,
  bytes: number,
): Promise<(string | number)[]> {
  const collector = await startCollector(config);
  try {
    const l = await measureLatency(collector.port);
    return [
      label,
      fmt(FILL_SAMPLES),
      fmt(FILL_SAMPLES / fillSeconds),
      fmt(bytes / FILL_SAMPLES, 1),
      l.endpoints,
      fmt(l.p50, 1),
      fmt(l.p95, 1),
      fmt(l.max, 1),
    ];
  } finally {
    await collector.stop();
  }
}

async function measureLatency(port: number): Promise<{ p50: number; p95: number; max: number; endpoints: number }> {
  const now = Date.now();
  const queries = [
    `/v1/endpoints?service=${SERVICE}`,
    `/v1/endpoints?service=${SERVICE}&from=${now - 24 * 3_600_000}&to=${now}`,
    ...COMMITS.map((c) => `/v1/endpoints?service=${SERVICE}&commit=${c}`),
    `/v1/endpoints?service=${SERVICE}&from=${now - 3_600_000 * 6}&to=${now}&metric=instructions`,
  ];
  const times: number[] = [];
  let endpoints = 0;
  freshAgent();
  for (let i = 0; i < 5; i++)
    await request(port, 'GET', queries[i % queries.length] as string, { authorization: `Bearer ${READ_TOKEN}` });
  for (let i = 0; i < LATENCY_REQUESTS; i++) {
    const t0 = performance.now();
    const res = await request(port, 'GET', queries[i % queries.length] as string, {
      authorization: `Bearer ${READ_TOKEN}`,
    });
    times.push(performance.now() - t0);
    if (res.status !== 200) throw new Error(`GET /v1/endpoints: ${res.status} ${res.body}`);
    endpoints = Math.max(endpoints, (JSON.parse(res.body) as unknown[]).length);
  }
  times.sort((a, b) => a - b);
  const at = (q: number): number => times[Math.min(times.length - 1, Math.floor(q * times.length))] as number;
  return { p50: at(0.5), p95: at(0.95), max: times[times.length - 1] as number, endpoints };
}

/** A DuckDB store filled with FILL_SAMPLES samples: made once per run, shared by the benchmarks that read it. */
export interface FilledDuckDb {
  /** The filled, compacted database file. Readers copy it: DuckDB locks a file to one process. */
  file: string;
  /** Seconds the fill took (NaN for a file given by BENCH_FILLED_DUCKDB). */
  fillSeconds: number;
  /** Bytes of the database files. */
  bytes: number;
  samples: number;
}

let filledDuckDb: Promise<FilledDuckDb> | undefined;

/**
 * The 10 M-sample DuckDB store of the latency benchmarks, filled on first use (about 10 minutes on
 * a 2-vCPU VM) and removed when the run exits. BENCH_FILLED_DUCKDB=/path/to/file.duckdb reuses a
 * file filled before (e.g. by an earlier run with BENCH_KEEP_FILL=/path): for iterating on read paths.
 */
export function filledDuckDbStore(): Promise<FilledDuckDb> {
  filledDuckDb ??= (async () => {
    const given = process.env.BENCH_FILLED_DUCKDB;
    if (given !== undefined && given !== '') {
      const samples = await (async () => {
        const store = openDuckDbStore({ path: given });
        await store.init();
        try {
          return await store.sampleCount();
        } finally {
          await store.close();
        }
      })();
      return { file: given, fillSeconds: Number.NaN, bytes: statSync(given).size, samples };
    }
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-bench-fill-'));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'fill.duckdb');
    const store = openDuckDbStore({ path: file });
    await store.init();
    let fillSeconds: number;
    try {
      fillSeconds = await fillStore(store, FILL_SAMPLES);
      await store.flushAggregates();
      await store.compact();
    } finally {
      await store.close();
    }
    const keep = process.env.BENCH_KEEP_FILL;
    if (keep !== undefined && keep !== '') copyFileSync(file, keep);
    return { file, fillSeconds, bytes: duBytes(dir), samples: FILL_SAMPLES };
  })();
  return filledDuckDb;
}

/** /v1/endpoints latency over a store of FILL_SAMPLES samples, and bytes per stored sample. */
export async function benchEndpointsLatency(): Promise<BenchTable> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-bench-endpoints-'));
  const rows: (string | number)[][] = [];
  const notes: string[] = [];
  try {
    const filled = await filledDuckDbStore();
    const file = path.join(dir, 'fill.duckdb');
    copyFileSync(filled.file, file);
    const fillS = filled.fillSeconds;
    const bytes = filled.bytes;
    findings.duckdbBytesPerSample = bytes / FILL_SAMPLES;
    rows.push(await latencyRow('DuckDB', { backend: 'duckdb', db: file }, fillS, bytes));
    // Filling ClickHouse with 10 M samples through the store takes well over 20 minutes on a 2-vCPU
    // VM, so its latency row is opt-in (BENCH_LATENCY_CLICKHOUSE=1).
    const harness =
      process.env.BENCH_INGEST_CLICKHOUSE === '0' || process.env.BENCH_LATENCY_CLICKHOUSE !== '1'
        ? undefined
        : loadHarness();
    if (harness !== undefined) {
      let server: Awaited<ReturnType<ClickHouseHarness['startClickHouse']>> | undefined;
      try {
        server = await harness.startClickHouse();
        const chStore = openClickHouseStore({ url: server.url, database: 'bench_fill' });
        await chStore.init();
        let chFillS: number;
        try {
          chFillS = await fillStore(chStore, FILL_SAMPLES);
        } finally {
          await chStore.close();
        }
        await fetch(`${server.url}/?query=${encodeURIComponent('OPTIMIZE TABLE bench_fill.samples_local FINAL')}`, {
          method: 'POST',
        });
        const sizeRes = await fetch(
          `${server.url}/?query=${encodeURIComponent("SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'bench_fill' AND active")}`,
        );
        const chBytes = Number((await sizeRes.text()).trim());
        findings.clickhouseBytesPerSample = chBytes / FILL_SAMPLES;
        rows.push(
          await latencyRow(
            'ClickHouse (1 node)',
            { backend: 'clickhouse', url: server.url, database: 'bench_fill' },
            chFillS,
            chBytes,
          ),
        );
      } catch (error) {
        notes.push(`ClickHouse: not measured (${(error as Error).message.split('\n')[0]}).`);
      } finally {
        await server?.stop();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    title: 'GET /v1/endpoints latency over a filled store',
    description:
      `The store is filled through its own \`ingestMany\` (20 batches a call) with ${fmt(FILL_SAMPLES)} samples: one day of the ingest workload ` +
      `(one service, 4 commits, 30 endpoints), then compacted. Then the collector serves ${LATENCY_REQUESTS} sequential ` +
      '`GET /v1/endpoints` requests over real HTTP with the read token, rotating through the whole history, the last 24 h, each commit and the last 6 h. ' +
      'Bytes per sample: the database files (DuckDB) or the active parts of every table (ClickHouse, after OPTIMIZE of samples) divided by the samples stored; ' +
      'it includes aggregates, counts and users.',
    columns: [
      'backend',
      'samples stored',
      'fill samples/s',
      'bytes per sample',
      'endpoints',
      'p50 ms',
      'p95 ms',
      'max ms',
    ],
    rows,
    notes,
  };
}

/**
 * Where a sample's CPU goes on the DuckDB path, stage by stage, in this process (warm, after a
 * first round): the floor any collector on this store design pays per sample.
 */
export async function benchIngestFloor(): Promise<BenchTable> {
  const limits = resolveLimits();
  const count = QUICK ? 40 : 200;
  const wires = wireBatches(21, count);
  const bodies = wires.map((w) => gzipBody(w));
  const stages = ['gunzip', 'JSON depth scan', 'UTF-8 decode', 'JSON.parse', 'validate', 'roll-up (aggregates in JS)'];
  const cpuUs: number[] = stages.map(() => 0);
  for (let round = 0; round < 2; round++) {
    cpuUs.fill(0);
    for (const body of bodies) {
      const time = <T>(stage: number, run: () => T): T => {
        const before = process.cpuUsage();
        const value = run();
        const used = process.cpuUsage(before);
        cpuUs[stage] = (cpuUs[stage] as number) + used.user + used.system;
        return value;
      };
      const raw = time(0, () => gunzipSync(body));
      time(1, () => jsonDepthExceeds(raw, limits.maxJsonDepth));
      const text = time(2, () => raw.toString('utf8'));
      const parsed = time(3, () => JSON.parse(text) as unknown);
      const batch = time(4, () => validateBatch(parsed, limits, Date.now()));
      time(5, () => rollUpSamples(batch.samples));
    }
  }
  const samples = count * SAMPLES_PER_BATCH;
  const rows: (string | number)[][] = stages.map((stage, i) => [stage, fmt((cpuUs[i] as number) / samples, 2)]);

  let storeTotalUs = Number.NaN;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-bench-floor-'));
  try {
    const batches = wires.map(toIngestBatch);
    const storeUs = async (withAggregates: boolean): Promise<number> => {
      const options = withAggregates
        ? { path: path.join(dir, 'with.duckdb') }
        : { path: path.join(dir, 'without.duckdb'), aggregateFlushRows: 1e12, aggregateFlushMs: 1e9 };
      rmSync(options.path, { force: true });
      rmSync(`${options.path}.wal`, { force: true });
      const store = openDuckDbStore(options);
      await store.init();
      try {
        const warm = Math.min(32, batches.length / 4);
        for (let i = 0; i < warm; i += CONCURRENCY) await store.ingestMany(batches.slice(i, i + CONCURRENCY));
        if (withAggregates) await store.flushAggregates();
        await store.checkpoint();
        const cpu0 = selfCpuSeconds();
        for (let i = warm; i < batches.length; i += CONCURRENCY) {
          await store.ingestMany(batches.slice(i, Math.min(batches.length, i + CONCURRENCY)));
        }
        if (withAggregates) {
          await store.flushAggregates();
          await store.compact();
        }
        await store.checkpoint();
        return ((selfCpuSeconds() - cpu0) * 1e6) / ((batches.length - warm) * SAMPLES_PER_BATCH);
      } finally {
        await store.close();
      }
    };
    // The lowest of three runs each: the difference of the two is small next to a loaded machine's noise.
    let withAggregates = Number.POSITIVE_INFINITY;
    let withoutAggregates = Number.POSITIVE_INFINITY;
    for (let run = 0; run < 3; run++) {
      withAggregates = Math.min(withAggregates, await storeUs(true));
      withoutAggregates = Math.min(withoutAggregates, await storeUs(false));
    }
    storeTotalUs = withAggregates;
    rows.push([
      'store.ingestMany without writing aggregates (samples, counts, users, batches; includes roll-up)',
      fmt(withoutAggregates, 2),
    ]);
    rows.push([
      'store: aggregate writes (flush of the in-memory accumulator)',
      fmt(withAggregates - withoutAggregates, 2),
    ]);
    const raw = await measureRawDuckDb(dir, 21);
    rows.push([
      "raw DuckDB appender of the sample rows (pre-built typed columns, the store's column-wise writer)",
      fmt(microsPerSample(raw), 2),
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    title: 'Ingest floor: CPU per sample by stage (DuckDB)',
    description:
      `CPU µs per sample of each stage of \`POST /v1/samples\` on ${fmt(samples)} samples of the ingest workload (wire format 2), timed in one process ` +
      '(process.cpuUsage, all threads; the parse stages on the second of two rounds), and of the DuckDB store with and without its aggregate writes (the lowest of three runs each). ' +
      'A collector cannot go below the sum of the stages it runs, on the same machine at the same moment: the HTTP rows of the ingest table ' +
      '(what a collector pays on top: HTTP, GC of the batches held until their group commit, smaller groups) were measured minutes apart, ' +
      'and this shared VM runs up to 1.5× faster or slower from one hour to the next, so compare stages with each other and rows of one table with each other.',
    columns: ['stage', 'CPU µs per sample'],
    rows,
    notes: [
      floorNote(
        cpuUs.slice(0, 5).map((us) => us / samples),
        storeTotalUs,
      ),
    ],
  };
}

/** The sum of the stages a collector runs: parse stages (µs per sample) + the store with its aggregate writes (roll-up included). */
function floorNote(parseUs: number[], storeUs: number): string {
  const parse = parseUs.reduce((sum, us) => sum + us, 0);
  const floor = parse + storeUs;
  return (
    `Floor: ${fmt(parse, 2)} µs of parsing and validation + ${fmt(storeUs, 2)} µs in the store (with aggregate writes and roll-up) = ${fmt(floor, 2)} µs per sample, ` +
    `at most ${fmt(1e6 / floor)} samples per CPU-second before HTTP and garbage collection; 100,000 samples/s/core needs the whole path under 10 µs.`
  );
}
