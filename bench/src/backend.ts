import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BACKEND_VARIANTS, type BackendVariant } from './apps/backend-server';
import type { LoadRequest, LoadResult } from './apps/load-generator';
import type { BenchTable } from './report';
import {
  canPin,
  firstMessage,
  LOAD_CPU,
  median,
  procSnapshot,
  runLoadGenerator,
  SERVER_CPU,
  startChild,
  stopServer,
} from './throughput';

/**
 * Throughput of an Express app doing one Redis GET (ioredis) and one
 * PostgreSQL query (pg pool) per request — apps/backend-server.ts — with no
 * agent, and with the agent at sample rates 1 and 0.01 with the backend
 * instrumentations off, each alone, and all on; side by side in one run,
 * against a real PostgreSQL and Redis that this benchmark starts on loopback
 * (the agent's test harness, packages/agent/test/support/servers.ts).
 *
 * Runs as throughput.ts does: a fresh server process per run pinned to one CPU,
 * autocannon pinned to the other, warm-up then a measured period, variants
 * rotating their order from round to round. PostgreSQL and Redis are not
 * pinned: they share both CPUs with the server and the load generator, as a
 * database on the same host would, so req/s is lower than the app alone could
 * do and the CPU per request of the app process is the steadier figure.
 */

interface BackendBenchOptions {
  rounds: number;
  durationSeconds: number;
  warmupSeconds: number;
  connections: number;
}

/** 3 rounds × 7 variants × ~6 s: about 2 minutes plus start-up of the servers. */
const FULL: BackendBenchOptions = { rounds: 3, durationSeconds: 4, warmupSeconds: 1, connections: 10 };
const QUICK: BackendBenchOptions = { rounds: 1, durationSeconds: 1, warmupSeconds: 1, connections: 10 };

const VARIANTS = Object.keys(BACKEND_VARIANTS) as BackendVariant[];
const PATH = '/item/7';

interface Servers {
  pgUrl: string;
  redisPort: number;
}

interface RunResult {
  variant: BackendVariant;
  round: number;
  requestsPerSecond: number;
  load: LoadResult;
  cpuMicrosPerRequest: number | undefined;
}

type SupportModule = typeof import('../../packages/agent/test/support/servers');

/** The agent's test harness for real servers, from its build output (bench builds after the agent). */
function serverHarness(): SupportModule {
  return require(path.join(__dirname, '..', '..', '..', 'packages', 'agent', 'dist', 'test', 'support', 'servers.js'));
}

/** Runs the benchmark and returns its table; BENCH_QUICK=1 for a smoke run (~30 s). */
export async function benchBackend(options: Partial<BackendBenchOptions> = {}): Promise<BenchTable> {
  const settings: BackendBenchOptions = { ...(process.env.BENCH_QUICK === '1' ? QUICK : FULL), ...options };
  const harness = serverHarness();
  const [postgres, redis] = await Promise.all([harness.startPostgres(), harness.startRedis()]);
  try {
    const servers: Servers = { pgUrl: postgres.url, redisPort: redis.port };
    const pinning = canPin();
    // Unmeasured first run: the first server after an idle spell is slower, whichever it is.
    await runOnce('none', 0, { ...settings, durationSeconds: settings.warmupSeconds }, servers, pinning);
    const runs: RunResult[] = [];
    for (let round = 1; round <= settings.rounds; round++) {
      const shift = (round - 1) % VARIANTS.length;
      for (const variant of [...VARIANTS.slice(shift), ...VARIANTS.slice(0, shift)]) {
        const run = await runOnce(variant, round, settings, servers, pinning);
        runs.push(run);
        console.error(
          `backend: round ${round}/${settings.rounds} ${variant.padEnd(10)} ${run.requestsPerSecond.toFixed(0)} req/s` +
            (run.cpuMicrosPerRequest === undefined ? '' : `, ${run.cpuMicrosPerRequest.toFixed(1)} µs CPU/req`),
        );
      }
    }
    return buildTable(runs, settings, pinning);
  } finally {
    await Promise.all([postgres.stop(), redis.stop()]);
  }
}

async function generateLoad(
  port: number,
  durationSeconds: number,
  settings: BackendBenchOptions,
  pinning: boolean,
): Promise<LoadResult> {
  const request: LoadRequest = {
    url: `http://127.0.0.1:${port}`,
    path: PATH,
    connections: settings.connections,
    durationSeconds,
  };
  return runLoadGenerator(request, pinning);
}

async function runOnce(
  variant: BackendVariant,
  round: number,
  settings: BackendBenchOptions,
  servers: Servers,
  pinning: boolean,
): Promise<RunResult> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ergometer-bench-backend-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    BENCH_VARIANT: variant,
    BENCH_COLLECTOR: `file:${path.join(dir, 'samples.ndjson')}`,
    PG_URL: servers.pgUrl,
    REDIS_PORT: String(servers.redisPort),
    ERGOMETER_COMMIT: 'bench',
  };
  const server = startChild('backend-server.js', env, SERVER_CPU, pinning);
  try {
    const ready = await firstMessage<{ type: 'listening'; port: number }>(server, `the ${variant} server`);
    await generateLoad(ready.port, settings.warmupSeconds, settings, pinning);
    const before = procSnapshot(server.pid!);
    const load = await generateLoad(ready.port, settings.durationSeconds, settings, pinning);
    const after = procSnapshot(server.pid!);
    return {
      variant,
      round,
      requestsPerSecond: load.requests / load.durationSeconds,
      load,
      cpuMicrosPerRequest:
        before && after && load.requests > 0 ? (after.cpuMicros - before.cpuMicros) / load.requests : undefined,
    };
  } finally {
    await stopServer(server);
    await rm(dir, { recursive: true, force: true });
  }
}

const LABELS: Record<BackendVariant, string> = {
  none: 'no agent',
  '1-off': 'agent, sampleRate 1, backend off',
  '1-pg': 'agent, sampleRate 1, backend: pg only',
  '1-ioredis': 'agent, sampleRate 1, backend: ioredis only',
  '1-on': 'agent, sampleRate 1, backend on (all)',
  '0.01-off': 'agent, sampleRate 0.01, backend off',
  '0.01-on': 'agent, sampleRate 0.01, backend on (all)',
};

/** The variant each one is compared with: the same sample rate, backend off. */
const BACKEND_OFF_OF: Partial<Record<BackendVariant, BackendVariant>> = {
  '1-pg': '1-off',
  '1-ioredis': '1-off',
  '1-on': '1-off',
  '0.01-on': '0.01-off',
};

const pct = (ratio: number) => `${(ratio * 100).toFixed(1)}%`;

function buildTable(runs: RunResult[], settings: BackendBenchOptions, pinning: boolean): BenchTable {
  const byRound = (variant: BackendVariant) =>
    new Map(runs.filter((r) => r.variant === variant).map((r) => [r.round, r]));
  const paired = (variant: BackendVariant, reference: BackendVariant): number => {
    const ref = byRound(reference);
    return median(
      runs
        .filter((r) => r.variant === variant && ref.has(r.round))
        .map((r) => r.requestsPerSecond / ref.get(r.round)!.requestsPerSecond),
    );
  };
  const cpuOf = (variant: BackendVariant): number | undefined => {
    const values = runs
      .filter((r) => r.variant === variant)
      .map((r) => r.cpuMicrosPerRequest)
      .filter((v): v is number => v !== undefined);
    return values.length > 0 ? median(values) : undefined;
  };
  const rows = VARIANTS.map((variant) => {
    const own = runs.filter((r) => r.variant === variant);
    const rps = own.map((r) => r.requestsPerSecond);
    const off = BACKEND_OFF_OF[variant];
    const cpu = cpuOf(variant);
    return [
      LABELS[variant],
      median(rps).toFixed(0),
      `${Math.min(...rps).toFixed(0)}–${Math.max(...rps).toFixed(0)}`,
      pct(paired(variant, 'none')),
      off === undefined ? '—' : pct(paired(variant, off)),
      cpu === undefined ? '—' : cpu.toFixed(1),
      median(own.map((r) => r.load.latencyP99Ms)).toFixed(0),
    ];
  });

  const notes: string[] = [];
  for (const [on, off, what] of [
    ['1-on', '1-off', 'at sampleRate 1 (every request timed)'],
    ['0.01-on', '0.01-off', 'at sampleRate 0.01'],
  ] as const) {
    const cpuOn = cpuOf(on);
    const cpuOff = cpuOf(off);
    notes.push(
      `**Backend instrumentation ${what}:** ${pct(paired(on, off))} of the throughput with it off (paired by round)` +
        (cpuOn !== undefined && cpuOff !== undefined
          ? `; CPU per request ${cpuOff.toFixed(1)} → ${cpuOn.toFixed(1)} µs (${cpuOn >= cpuOff ? '+' : ''}${(cpuOn - cpuOff).toFixed(1)} µs).`
          : '.'),
    );
  }
  notes.push(
    'Between sampled requests the channel subscriptions are off (ioredis then skips its tracing wrapper entirely) and ' +
      "pg's patched query() costs one comparison; during sampled requests each Redis command pays ioredis's own " +
      'tracing work (its trace context and wrapper promise) and each query one timer start/end — which is what the ' +
      'sampleRate 1 rows show per request.',
  );
  notes.push(...noiseNotes(runs));
  const failed = runs.filter((r) => r.load.non2xx > 0 || r.load.errors > 0);
  if (failed.length > 0) {
    notes.push(
      `**Warning:** ${failed.length} run(s) saw non-2xx responses or errors (${failed
        .map((r) => `${r.variant}#${r.round}: ${r.load.non2xx} non-2xx, ${r.load.errors} errors`)
        .join('; ')}); req/s counts 2xx only.`,
    );
  }
  return {
    title: 'Backend instrumentation: an Express app with one Redis GET and one PostgreSQL query per request',
    description:
      'Express 5 app of `bench/src/apps/backend-server.ts`: per request `GET item:N` with ioredis and ' +
      '`SELECT $1::int, $2::int` on a pg pool of 10, against a PostgreSQL 15 and a Redis started on 127.0.0.1 for ' +
      `the run; autocannon on \`${PATH}\` with ${settings.connections} connections. Each run is a fresh server process: ` +
      `${settings.warmupSeconds} s warm-up, ${settings.durationSeconds} s measured; ${VARIANTS.length} variants in ` +
      `${settings.rounds} round(s), each round starting one variant later. ` +
      (pinning
        ? `App pinned to CPU ${SERVER_CPU}, autocannon to CPU ${LOAD_CPU}; PostgreSQL and Redis float. `
        : '**Not pinned** (no `taskset` or fewer than 2 CPUs). ') +
      'req/s: median over rounds (2xx only) with min–max; "% of no agent" and "% of backend off" are paired with the ' +
      "run of the same round (median of the ratios); CPU µs/req is the app process's CPU time per request " +
      '(`/proc/<pid>/stat`), median over rounds.',
    columns: [
      'Variant',
      'req/s (median)',
      'min–max',
      '% of no agent',
      '% of backend off (same rate)',
      'CPU µs/req',
      'p99 ms',
    ],
    rows,
    notes,
  };
}

/**
 * How far to trust the table: the spread of the no-agent runs alone (a
 * difference smaller than it is noise), and whether the app was the bottleneck
 * (app CPU per request × req/s near one CPU). When it was not — the database,
 * Redis or other processes on the machine held requests up — req/s says little
 * about the agent and CPU µs/req is the figure to read.
 */
function noiseNotes(runs: RunResult[]): string[] {
  const notes: string[] = [];
  const none = runs.filter((r) => r.variant === 'none').map((r) => r.requestsPerSecond);
  if (none.length > 1) {
    const spread = Math.max(...none) / Math.min(...none) - 1;
    notes.push(
      `Noise: the no-agent runs alone spread over ${pct(spread)} (slowest to fastest); ` +
        (spread > 0.1 ? '**differences in req/s smaller than that are not results.**' : 'differences beyond it are.'),
    );
  }
  const busy = runs
    .map((r) => (r.cpuMicrosPerRequest === undefined ? undefined : (r.cpuMicrosPerRequest * r.requestsPerSecond) / 1e6))
    .filter((b): b is number => b !== undefined);
  if (busy.length > 0) {
    const low = Math.min(...busy);
    notes.push(
      `Bottleneck check: the app process used ${pct(low)}–${pct(Math.max(...busy))} of a CPU during the measured periods` +
        (low < 0.8
          ? '; below ~80% the app was waiting on PostgreSQL, Redis or a machine busy with other work, not on its own CPU, so req/s there reflects them, and CPU µs/req is the column that measures the agent.'
          : ': the app was CPU-bound, so req/s follows its CPU per request.'),
    );
  }
  return notes;
}
