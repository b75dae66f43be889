import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { openCounter } from '@ergometer/counters';
import type { LoadRequest, LoadResult } from './apps/load-generator';
import { APP_VARIANTS, type AppVariant, REGISTER_SAMPLE_RATES, type ServerReady, type ServerStop } from './apps/server';
import { type BenchTable, renderTable } from './report';

/**
 * Throughput of a realistic Express app (apps/app.ts) with no agent, with a
 * middleware that does nothing (the floor of any `app.use()` instrumentation),
 * with the agent at sample rates 0, 0.01 and 1 (`app.use(agent.express())`)
 * and at 0.01 through `--require @ergometer/agent/register`, and with the
 * OpenTelemetry tracing SDK, measured side by side in one run.
 *
 * Each run starts a fresh server process for one variant, pinned to one CPU,
 * drives it with autocannon pinned to the other CPU, warms it up, then measures
 * for a fixed time. Variants alternate, each round starting one variant later
 * (ABC…, BC…A, …), so that drift of the machine (thermal, noisy neighbours of
 * a VM) spreads over all of them instead of landing on one. Besides requests/s, the server's CPU time and read(2)
 * count per request come from /proc: with the server's CPU saturated, CPU per
 * request is the cause and requests/s the effect, and the extra read(2) calls
 * of the agent at rate 1 are its counter reads (task-clock is read with read(2);
 * rdpmc would make no syscall at all).
 */

/** How long and how often to measure. */
export interface ThroughputOptions {
  /** Rounds of all variants; the median over rounds is reported. */
  rounds: number;
  /** Measured seconds per run. */
  durationSeconds: number;
  /** Seconds of load before measuring, so that every variant is measured JIT-warm. */
  warmupSeconds: number;
  /** autocannon connections. */
  connections: number;
  /**
   * Runs repeated at most, per benchmark, because other processes used more than
   * NOISY_BACKGROUND of a CPU while they were measured (~8 s each).
   */
  maxRepeats: number;
}

/** 4 rounds × 7 variants × ~8 s, plus repeats: 4–4.5 minutes, so that `npm run bench` stays under ~6. */
const FULL: ThroughputOptions = { rounds: 4, durationSeconds: 5, warmupSeconds: 2, connections: 10, maxRepeats: 4 };
/** BENCH_QUICK=1: a smoke run that checks the machinery, not the numbers. */
const QUICK: ThroughputOptions = { rounds: 1, durationSeconds: 2, warmupSeconds: 1, connections: 10, maxRepeats: 0 };

/** Goal 1: at sampleRate 0.01 the app keeps at least this share of its throughput without the agent. */
const GOAL_KEEP_AT_1_PERCENT = 0.99;
/** Goal 2: at sampleRate 1 the agent loses at most this share of what OpenTelemetry loses. */
const GOAL_SHARE_OF_OTEL_LOSS = 1 / 3;

/** Background CPU use (in CPUs) above which a run is named as disturbed, and repeated. */
const NOISY_BACKGROUND = 0.1;

const APPS_DIR = path.join(__dirname, 'apps');
export const SERVER_CPU = 0;
export const LOAD_CPU = 1;

interface ProcSnapshot {
  /** User and kernel CPU time of all threads, µs. */
  cpuMicros: number;
  /** Of which in the kernel (stime): syscalls, page faults, the scheduler's work for the process. */
  kernelMicros: number;
  readSyscalls: number;
}

export interface RunResult {
  variant: AppVariant;
  round: number;
  requestsPerSecond: number;
  load: LoadResult;
  /** Server CPU (all threads) per 2xx response, µs; undefined without /proc. */
  cpuMicrosPerRequest: number | undefined;
  /** Server read(2) calls per response; undefined without /proc/<pid>/io. */
  readsPerRequest: number | undefined;
  /** Server CPU time / duration of the measured period, in CPUs. */
  serverBusy: number | undefined;
  /**
   * CPU used by every other process on the machine during the measured period, in CPUs
   * (all CPUs' busy time minus the server's and autocannon's). Other work on a 2-CPU
   * machine competes with the server or the load generator and skews req/s.
   */
  backgroundBusy: number | undefined;
  /** VmHWM of the server process at the end of the run, MiB. */
  peakRssMiB: number | undefined;
  counter: string | undefined;
}

interface CounterReadCost {
  source: string;
  rdpmc: boolean;
  /** One read() of the counter the agent uses, ns. */
  nsPerRead: number;
  /** One read() of a closed counter: the N-API call with no syscall, the floor any read pays. */
  floorNsPerRead: number;
}

/**
 * Runs the benchmark and returns its table. Options default to BENCH_QUICK=1's
 * smoke settings (~30 s) when that variable is set, else to the full run (~4 minutes).
 */
export async function benchThroughput(options: Partial<ThroughputOptions> = {}): Promise<BenchTable> {
  const settings: ThroughputOptions = { ...(process.env.BENCH_QUICK === '1' ? QUICK : FULL), ...options };
  const pinning = canPin();
  const counterCost = measureCounterRead();
  // One unmeasured run first: the first server after an idle spell measured consistently
  // slower (the VM's CPUs ramping up, caches and page cache cold), whichever variant it was.
  await runOnce('none', 0, { ...settings, durationSeconds: settings.warmupSeconds }, pinning);
  const runs: RunResult[] = [];
  let repeatsLeft = settings.maxRepeats;
  let repeated = 0;
  for (let round = 1; round <= settings.rounds; round++) {
    // Each round starts one variant later (ABC…, BC…A, …): no variant always runs first,
    // right after the previous server's exit, or always last.
    const shift = (round - 1) % APP_VARIANTS.length;
    for (const variant of [...APP_VARIANTS.slice(shift), ...APP_VARIANTS.slice(0, shift)]) {
      let run = await runOnce(variant, round, settings, pinning);
      // A run that shared the machine with other work measures that work as much as the
      // variant: run it again, within a budget that bounds the benchmark's duration.
      if ((run.backgroundBusy ?? 0) > NOISY_BACKGROUND && repeatsLeft > 0) {
        logRun(run, settings, `other processes used ${pct(run.backgroundBusy ?? 0, 0)} of a CPU: repeating`);
        repeatsLeft--;
        repeated++;
        run = await runOnce(variant, round, settings, pinning);
      }
      runs.push(run);
      logRun(run, settings);
    }
  }
  return buildTable(runs, settings, pinning, counterCost, repeated);
}

function logRun(run: RunResult, settings: ThroughputOptions, remark?: string): void {
  console.error(
    `throughput: round ${run.round}/${settings.rounds} ${run.variant.padEnd(15)} ${run.requestsPerSecond.toFixed(0)} req/s` +
      (run.cpuMicrosPerRequest === undefined ? '' : `, ${run.cpuMicrosPerRequest.toFixed(1)} µs CPU/req`) +
      (remark === undefined ? '' : ` — ${remark}`),
  );
}

// ─── measuring ──────────────────────────────────────────────────────────────

function measureCounterRead(): CounterReadCost {
  const counter = openCounter();
  const nsPerRead = timeReads(counter.read);
  const { source, rdpmc } = counter;
  counter.close();
  // After close() read() returns -1 without touching the kernel: what is left is the N-API call.
  const floorNsPerRead = timeReads(counter.read);
  return { source, rdpmc, nsPerRead, floorNsPerRead };
}

function timeReads(read: () => number): number {
  const reads = 100_000;
  for (let i = 0; i < 10_000; i++) read();
  const started = process.hrtime.bigint();
  for (let i = 0; i < reads; i++) read();
  return Number(process.hrtime.bigint() - started) / reads;
}

/** True when `taskset` works and there are two CPUs to give server and load generator one each. */
export function canPin(): boolean {
  if (os.cpus().length < 2) return false;
  return spawnSync('taskset', ['-c', String(LOAD_CPU), 'true']).status === 0;
}

/** Starts `script` (in apps/) with an IPC channel, on `cpu` when pinning. */
export function startChild(
  script: string,
  env: NodeJS.ProcessEnv,
  cpu: number,
  pinning: boolean,
  nodeOptions: string[] = [],
  wrapper: readonly string[] = [],
): ChildProcess {
  const node = [...nodeOptions, path.join(APPS_DIR, script)];
  const stdio: ['ignore', 'inherit', 'inherit', 'ipc'] = ['ignore', 'inherit', 'inherit', 'ipc'];
  // taskset (and a wrapper such as valgrind) run node in place: same pid, and the IPC channel's fd is inherited.
  const command = [...(pinning ? ['taskset', '-c', String(cpu)] : []), ...wrapper, process.execPath, ...node];
  return spawn(command[0] as string, command.slice(1), { env, stdio });
}

/** Resolves with the first message of `child`; rejects if it exits before sending one. */
export function firstMessage<T>(child: ChildProcess, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) =>
      reject(new Error(`throughput: ${what} exited (code ${code}) before answering`));
    child.once('exit', onExit);
    child.once('message', (message) => {
      child.off('exit', onExit);
      resolve(message as T);
    });
  });
}

/** Runs the load generator (apps/load-generator.ts) on LOAD_CPU until it has sent `request`'s load; its result. */
export async function runLoadGenerator(request: LoadRequest, pinning: boolean): Promise<LoadResult> {
  const child = startChild(
    'load-generator.js',
    { ...process.env, BENCH_LOAD: JSON.stringify(request) },
    LOAD_CPU,
    pinning,
  );
  const result = await firstMessage<LoadResult>(child, 'the load generator');
  if (child.exitCode === null) await once(child, 'exit');
  return result;
}

/** Asks a server of apps/ to stop (it flushes its agent), and kills it if it has not exited 5 s later. */
export async function stopServer(server: ChildProcess): Promise<void> {
  if (server.exitCode !== null) return;
  const exited = once(server, 'exit');
  const stop: ServerStop = { type: 'stop' };
  server.send(stop);
  const timer = setTimeout(() => server.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

function generateLoad(port: number, durationSeconds: number, settings: ThroughputOptions, pinning: boolean) {
  return runLoadGenerator(
    { url: `http://127.0.0.1:${port}`, connections: settings.connections, durationSeconds },
    pinning,
  );
}

/**
 * Starts the throughput app's server as `variant` on SERVER_CPU, its agent (if any) writing to the collector
 * `collector` (a `file:` path, or an `http:` collector with ERGOMETER_TOKEN in `extraEnv`); the register-* variants
 * with `--require @ergometer/agent/register`. `wrapper` runs node under another program (valgrind).
 */
export function startAppServer(
  variant: AppVariant,
  collector: string,
  pinning: boolean,
  wrapper: readonly string[] = [],
  extraEnv: NodeJS.ProcessEnv = {},
): ChildProcess {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...extraEnv,
    BENCH_VARIANT: variant,
    BENCH_COLLECTOR: collector,
    // The benchmark is not a deployment: keep the agent from shelling out to git for the commit.
    ERGOMETER_COMMIT: 'bench',
  };
  const nodeOptions: string[] = [];
  const registerRate = REGISTER_SAMPLE_RATES[variant];
  if (registerRate !== undefined) {
    nodeOptions.push('--require', require.resolve('@ergometer/agent/register'));
    Object.assign(env, {
      ERGOMETER_SERVICE: 'bench-throughput',
      ERGOMETER_COLLECTOR: collector,
      ERGOMETER_SAMPLE_RATE: String(registerRate),
    });
  }
  return startChild('server.js', env, SERVER_CPU, pinning, nodeOptions, wrapper);
}

/** One measured run of one variant; `inspect` sees the collector's temp folder before it is removed. */
export async function runOnce(
  variant: AppVariant,
  round: number,
  settings: ThroughputOptions,
  pinning: boolean,
  inspect?: (dir: string) => void,
): Promise<RunResult> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ergometer-bench-'));
  const server = startAppServer(variant, `file:${path.join(dir, 'samples.ndjson')}`, pinning);
  try {
    const ready = await firstMessage<ServerReady>(server, `the ${variant} server`);
    const pid = server.pid!;
    await generateLoad(ready.port, settings.warmupSeconds, settings, pinning);
    const machineBefore = machineBusyMicros();
    const before = procSnapshot(pid);
    const wallStarted = performance.now();
    const load = await generateLoad(ready.port, settings.durationSeconds, settings, pinning);
    const wallMicros = (performance.now() - wallStarted) * 1000;
    const after = procSnapshot(pid);
    const machineAfter = machineBusyMicros();
    const durationMicros = load.durationSeconds * 1e6;
    const serverMicros = before && after ? after.cpuMicros - before.cpuMicros : undefined;
    const peakRssMiB = peakRss(pid);
    const served = load.requests;
    return {
      variant,
      round,
      requestsPerSecond: served / load.durationSeconds,
      load,
      cpuMicrosPerRequest: before && after && served > 0 ? (after.cpuMicros - before.cpuMicros) / served : undefined,
      readsPerRequest:
        before && after && served > 0 && before.readSyscalls >= 0
          ? (after.readSyscalls - before.readSyscalls) / served
          : undefined,
      serverBusy: serverMicros === undefined ? undefined : serverMicros / durationMicros,
      backgroundBusy:
        serverMicros === undefined || machineBefore === undefined || machineAfter === undefined
          ? undefined
          : // Over the whole interval, load-generator start-up included: /proc/stat has no finer view.
            Math.max(0, (machineAfter - machineBefore - serverMicros - load.loadGeneratorCpuMicros) / wallMicros),
      peakRssMiB,
      counter: ready.counter,
    };
  } finally {
    await stopServer(server);
    inspect?.(dir);
    await rm(dir, { recursive: true, force: true });
  }
}

const clockTicksPerSecond = (() => {
  const ticks = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout);
  return Number.isInteger(ticks) && ticks > 0 ? ticks : 100;
})();

/** CPU time of all threads of `pid` (and its kernel part) and its read(2) count, from /proc; undefined where there is no /proc. */
export function procSnapshot(pid: number): ProcSnapshot | undefined {
  try {
    // Fields after the command name (which may contain spaces): utime and stime are the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    let readSyscalls = -1;
    try {
      const io = readFileSync(`/proc/${pid}/io`, 'utf8');
      readSyscalls = Number(/^syscr:\s+(\d+)/m.exec(io)?.[1] ?? -1);
    } catch {
      // /proc/<pid>/io needs ptrace read access; without it the column stays empty.
    }
    return {
      cpuMicros: (ticks / clockTicksPerSecond) * 1e6,
      kernelMicros: (Number(fields[12]) / clockTicksPerSecond) * 1e6,
      readSyscalls,
    };
  } catch {
    return undefined;
  }
}

/**
 * Time all CPUs together spent running processes (user, nice, system in /proc/stat), µs.
 * Interrupt and softirq time is left out: loopback TCP between autocannon and the server
 * lands there, charged to no process.
 */
function machineBusyMicros(): number | undefined {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.split(/\s+/).slice(1).map(Number);
    const busyTicks = cpu[0]! + cpu[1]! + cpu[2]!;
    return (busyTicks / clockTicksPerSecond) * 1e6;
  } catch {
    return undefined;
  }
}

function peakRss(pid: number): number | undefined {
  try {
    const kib = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kib === undefined ? undefined : Number(kib) / 1024;
  } catch {
    return undefined;
  }
}

// ─── reporting ──────────────────────────────────────────────────────────────

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function defined(values: (number | undefined)[]): number[] {
  return values.filter((value): value is number => value !== undefined);
}

export const pct = (ratio: number, digits = 1) => `${(ratio * 100).toFixed(digits)}%`;
const fmt = (value: number | undefined, digits: number) => (value === undefined ? '—' : value.toFixed(digits));

interface VariantSummary {
  variant: AppVariant;
  medianRps: number;
  minRps: number;
  maxRps: number;
  cpuMicrosPerRequest: number | undefined;
  /** Lowest CPU µs/req over rounds: noise here only ever adds time, so this is the least disturbed figure. */
  bestCpuMicrosPerRequest: number | undefined;
  readsPerRequest: number | undefined;
  p99Ms: number;
  peakRssMiB: number | undefined;
  /** agent or otel rps / none rps of the same round, median over rounds. */
  pairedRatio: number;
}

function summarize(runs: RunResult[]): Map<AppVariant, VariantSummary> {
  const summaries = new Map<AppVariant, VariantSummary>();
  const baselineByRound = new Map(runs.filter((r) => r.variant === 'none').map((r) => [r.round, r.requestsPerSecond]));
  for (const variant of APP_VARIANTS) {
    const own = runs.filter((r) => r.variant === variant);
    const rps = own.map((r) => r.requestsPerSecond);
    const cpu = defined(own.map((r) => r.cpuMicrosPerRequest));
    const reads = defined(own.map((r) => r.readsPerRequest));
    const rss = defined(own.map((r) => r.peakRssMiB));
    summaries.set(variant, {
      variant,
      medianRps: median(rps),
      minRps: Math.min(...rps),
      maxRps: Math.max(...rps),
      cpuMicrosPerRequest: cpu.length > 0 ? median(cpu) : undefined,
      bestCpuMicrosPerRequest: cpu.length > 0 ? Math.min(...cpu) : undefined,
      readsPerRequest: reads.length > 0 ? median(reads) : undefined,
      p99Ms: median(own.map((r) => r.load.latencyP99Ms)),
      peakRssMiB: rss.length > 0 ? Math.max(...rss) : undefined,
      pairedRatio: median(own.map((r) => r.requestsPerSecond / (baselineByRound.get(r.round) ?? Number.NaN))),
    });
  }
  return summaries;
}

export const VARIANT_LABELS: Record<AppVariant, string> = {
  none: 'no agent',
  'noop-middleware': 'no agent, one no-op middleware',
  'agent-0': 'agent, `app.use(agent.express())`, sampleRate 0',
  'agent-0.01': 'agent, `app.use(agent.express())`, sampleRate 0.01',
  'register-0': 'agent, `--require @ergometer/agent/register`, sampleRate 0',
  'register-0.01': 'agent, `--require @ergometer/agent/register`, sampleRate 0.01',
  'agent-1': 'agent, `app.use(agent.express())`, sampleRate 1',
  otel: 'OpenTelemetry SDK (http + express, batch → no-op)',
  'agent-0.01-profile': 'agent, sampleRate 0.01, profiler recording (dutyCycle 1)',
  'agent-0.01-profile-default': 'agent, sampleRate 0.01, profiler at its defaults (periodMs 2 s)',
  'agent-0.01-profile-defaults-60s': 'agent, sampleRate 0.01, profiler at its defaults',
};

function buildTable(
  runs: RunResult[],
  settings: ThroughputOptions,
  pinning: boolean,
  counterCost: CounterReadCost,
  repeated: number,
): BenchTable {
  const summaries = summarize(runs);
  const get = (variant: AppVariant) => summaries.get(variant)!;
  const none = get('none');
  const rows = APP_VARIANTS.map((variant) => {
    const s = get(variant);
    return [
      VARIANT_LABELS[variant],
      s.medianRps.toFixed(0),
      `${s.minRps.toFixed(0)}–${s.maxRps.toFixed(0)}`,
      pct(s.medianRps / none.medianRps),
      fmt(s.cpuMicrosPerRequest, 1),
      fmt(s.bestCpuMicrosPerRequest, 1),
      fmt(s.readsPerRequest, 2),
      s.p99Ms.toFixed(0),
      fmt(s.peakRssMiB, 0),
    ];
  });

  const notes: string[] = [];
  notes.push(...goalNotes(summaries, counterCost));
  notes.push(noiseNote(runs, summaries));
  notes.push(bottleneckNote(runs, pinning, repeated));
  const failed = runs.filter((r) => r.load.non2xx > 0 || r.load.errors > 0);
  if (failed.length > 0) {
    notes.push(
      `**Warning:** ${failed.length} run(s) saw non-2xx responses or connection errors ` +
        `(${failed.map((r) => `${r.variant}#${r.round}: ${r.load.non2xx} non-2xx, ${r.load.errors} errors`).join('; ')}); ` +
        'requests/s counts 2xx only.',
    );
  }

  const counter = runs.find((r) => r.counter !== undefined)?.counter ?? counterCost.source;
  return {
    title: 'Throughput: a realistic Express app with and without the agent, and with OpenTelemetry',
    description:
      'Express 5 app of `bench/src/apps/app.ts` (JSON body parsing, an `await` on a resolved promise and one ' +
      'on a setImmediate "database" hop, array/Map work, 1–2 KB JSON responses; a mix of product pages, ' +
      `searches and orders), driven by autocannon on 127.0.0.1 with ${settings.connections} connections. ` +
      `Each run is a fresh server process: ${settings.warmupSeconds} s warm-up, then ${settings.durationSeconds} s ` +
      `measured; the ${APP_VARIANTS.length} variants alternate in ${settings.rounds} round(s) (every variant once per round, ` +
      'each round starting one variant later). ' +
      (pinning
        ? `Server pinned to CPU ${SERVER_CPU}, autocannon to CPU ${LOAD_CPU} (\`taskset\`). `
        : '**Not pinned** (no `taskset` or fewer than 2 CPUs): server and autocannon share CPUs, so treat differences as rough. ') +
      `Agent counter: \`${counter}\`. req/s is the median over rounds (2xx only), with min–max; ` +
      '"CPU µs/req" and "read(2)/req" are the server process\'s CPU time (all threads) and read syscalls ' +
      '(`/proc/<pid>/stat`, `/proc/<pid>/io`) per request over the measured period, median over rounds; ' +
      "'lowest' is that of the least disturbed run; p99 latency is the median of the runs' p99; " +
      'peak RSS is the highest VmHWM over rounds.',
    columns: [
      'Variant',
      'req/s (median)',
      'min–max',
      '% of no agent',
      'CPU µs/req',
      'lowest CPU µs/req',
      'read(2)/req',
      'p99 ms',
      'peak RSS MiB',
    ],
    rows,
    notes,
  };
}

function goalNotes(summaries: Map<AppVariant, VariantSummary>, cost: CounterReadCost): string[] {
  const none = summaries.get('none')!;
  const full = summaries.get('agent-1')!;
  const otel = summaries.get('otel')!;
  const notes: string[] = [];

  // Judged for each way of installing the agent: a user picks one, not the better of two runs.
  const noop = summaries.get('noop-middleware')!;
  const baselineSpread = none.maxRps / none.minRps - 1;
  // A verdict finer than the machine's own noise would be a guess, not a result.
  const conclusive = baselineSpread <= 1 - GOAL_KEEP_AT_1_PERCENT;
  for (const [variant, how] of [
    ['agent-0.01', 'with `app.use(agent.express())`'],
    ['register-0.01', 'with `--require @ergometer/agent/register`'],
  ] as const) {
    const low = summaries.get(variant)!;
    const keep = low.medianRps / none.medianRps;
    notes.push(
      `**Goal 1 — at sampleRate 0.01 keep ≥ ${pct(GOAL_KEEP_AT_1_PERCENT, 0)} of the throughput, ${how}: ` +
        `${conclusive ? (keep >= GOAL_KEEP_AT_1_PERCENT ? 'met' : 'missed') : 'inconclusive on this machine'}.** ` +
        `${low.medianRps.toFixed(0)} / ${none.medianRps.toFixed(0)} req/s = ${pct(keep)} ` +
        `(paired with the no-agent run of the same round: median ${pct(low.pairedRatio)})${cpuShare(none, low)}.`,
    );
  }
  if (!conclusive) {
    notes.push(
      `Caution: the no-agent runs alone spread over ${pct(baselineSpread)} (slowest to fastest), more than the ` +
        `${pct(1 - GOAL_KEEP_AT_1_PERCENT, 0)} this goal allows: on this machine this run can neither confirm nor refute it. The next table measures ` +
        'Goal 1 side by side (two processes at once on one CPU), which can.',
    );
  }
  notes.push(
    `For scale: a middleware that does nothing keeps ${pct(noop.medianRps / none.medianRps)} ` +
      `(paired ${pct(noop.pairedRatio)}) — one more Express layer is the floor of any \`app.use()\` instrumentation; ` +
      'the register hook sits below Express, on node:http, and still names endpoints by Express route template.',
  );

  const otelLoss = 1 - otel.medianRps / none.medianRps;
  const agentLoss = 1 - full.medianRps / none.medianRps;
  const allowedLoss = otelLoss * GOAL_SHARE_OF_OTEL_LOSS;
  const met = agentLoss <= allowedLoss;
  notes.push(
    `**Goal 2 — at sampleRate 1 lose at most a third of what OpenTelemetry loses: ${met ? 'met' : 'missed'}.** ` +
      `OpenTelemetry loses 1 − ${otel.medianRps.toFixed(0)}/${none.medianRps.toFixed(0)} = ${pct(otelLoss)}, ` +
      `so the budget is ${pct(otelLoss)} / 3 = ${pct(allowedLoss)}; the agent at 1.0 loses ` +
      `1 − ${full.medianRps.toFixed(0)}/${none.medianRps.toFixed(0)} = ${pct(agentLoss)} ` +
      `(${otelLoss > 0 ? `${(agentLoss / otelLoss).toFixed(2)}×` : 'n/a: OpenTelemetry lost nothing'} of OpenTelemetry's loss)` +
      `. On CPU per request: OpenTelemetry${cpuShare(none, otel, 'loss')}; the agent at 1.0${cpuShare(none, full, 'loss')}.`,
  );

  notes.push(bestRunsNote(summaries));
  const readNote = counterReadNote(none, full, cost, met);
  if (readNote) notes.push(readNote);
  return notes;
}

/**
 * The same comparison on the server's CPU per request: with the server's CPU
 * saturated, throughput is 1 / CPU per request, and CPU time is counted for the
 * server alone, so other load on the machine distorts it less than req/s.
 */
function cpuShare(none: VariantSummary, other: VariantSummary, as: 'keep' | 'loss' = 'keep'): string {
  if (none.cpuMicrosPerRequest === undefined || other.cpuMicrosPerRequest === undefined) return '';
  const keep = none.cpuMicrosPerRequest / other.cpuMicrosPerRequest;
  const arithmetic = `${none.cpuMicrosPerRequest.toFixed(1)}/${other.cpuMicrosPerRequest.toFixed(1)} µs`;
  return as === 'keep'
    ? `; on CPU per request ${arithmetic} = ${pct(keep)}`
    : ` loses 1 − ${arithmetic} = ${pct(1 - keep)}`;
}

/**
 * Both goals again on each variant's least disturbed run (lowest CPU per request):
 * slowdowns from other work, inside or outside this VM, only ever add CPU time,
 * so the minima are the closest this machine gets to the undisturbed cost.
 */
function bestRunsNote(summaries: Map<AppVariant, VariantSummary>): string {
  const best = (variant: AppVariant) => summaries.get(variant)!.bestCpuMicrosPerRequest;
  const none = best('none');
  const low = best('agent-0.01');
  const register = best('register-0.01');
  const full = best('agent-1');
  const otel = best('otel');
  if (none === undefined || low === undefined || register === undefined || full === undefined || otel === undefined) {
    return 'Least disturbed runs: not available (no /proc).';
  }
  const keep = (cpu: number) => `${none.toFixed(1)}/${cpu.toFixed(1)} = ${pct(none / cpu)}`;
  const otelLoss = 1 - none / otel;
  const agentLoss = 1 - none / full;
  return (
    "On each variant's least disturbed run (lowest CPU µs/req; throughput ∝ 1 / CPU per request): " +
    `at sampleRate 0.01 the app keeps ${keep(low)} with the middleware and ${keep(register)} with the register hook ` +
    `(goal ≥ ${pct(GOAL_KEEP_AT_1_PERCENT, 0)}); at 1.0 the agent loses ${pct(agentLoss)} and OpenTelemetry ` +
    `${pct(otelLoss)}: ${otelLoss > 0 ? `${(agentLoss / otelLoss).toFixed(2)}×` : 'n/a'} (goal ≤ 0.33×).`
  );
}

/**
 * Where the agent's time at rate 1 goes: its extra read(2) calls are counter
 * reads (everything else it does makes no read syscall), each costing what
 * the tight loop measured. Shows what the same reads would cost with rdpmc.
 */
function counterReadNote(
  none: VariantSummary,
  full: VariantSummary,
  cost: CounterReadCost,
  goalMet: boolean,
): string | undefined {
  const readUs = cost.nsPerRead / 1000;
  const floorUs = cost.floorNsPerRead / 1000;
  const head =
    `Counter read cost, measured at start-up in a tight loop: \`${cost.source}\`${cost.rdpmc ? ' (rdpmc)' : ''} ` +
    `${readUs.toFixed(3)} µs per read; the N-API call alone (a closed counter, no syscall) ${floorUs.toFixed(3)} µs.`;
  if (none.cpuMicrosPerRequest === undefined || full.cpuMicrosPerRequest === undefined) return head;
  const extraCpu = full.cpuMicrosPerRequest - none.cpuMicrosPerRequest;
  if (none.readsPerRequest === undefined || full.readsPerRequest === undefined || cost.rdpmc) {
    return `${head} The agent at 1.0 adds ${extraCpu.toFixed(1)} µs CPU per request.`;
  }
  const extraReads = full.readsPerRequest - none.readsPerRequest;
  const readsUs = extraReads * readUs;
  // With rdpmc a read is the N-API call plus one rdpmc instruction (tens of cycles): the floor is a lower bound.
  const rdpmcUs = extraReads * floorUs;
  const projectedCpu = none.cpuMicrosPerRequest + extraCpu - readsUs + rdpmcUs;
  const projectedLoss = 1 - none.cpuMicrosPerRequest / projectedCpu;
  return (
    `${head} ${goalMet ? 'Where the agent' : 'Why the goal is missed: the agent'} at 1.0 adds ` +
    `${full.cpuMicrosPerRequest.toFixed(1)} − ${none.cpuMicrosPerRequest.toFixed(1)} = ${extraCpu.toFixed(1)} µs CPU per request. ` +
    `Of that, counter reads: ${full.readsPerRequest.toFixed(2)} − ${none.readsPerRequest.toFixed(2)} = ` +
    `${extraReads.toFixed(2)} extra read(2) calls per request × ${readUs.toFixed(3)} µs = ${readsUs.toFixed(1)} µs ` +
    `(${pct(readsUs / extraCpu, 0)} of the overhead); the rest, ${(extraCpu - readsUs).toFixed(1)} µs, is async_hooks, ` +
    'AsyncLocalStorage and the sample itself (docs/agent.md, "Where the time goes at sampleRate 1", breaks it down: ' +
    'AsyncLocalStorage with a do-nothing async_hooks `before`/`after` hook alone loses more than Goal 2 allows). With rdpmc (instructions counter on a machine that exposes the PMU) ' +
    `the same reads would cost about ${extraReads.toFixed(2)} × ${floorUs.toFixed(3)} µs = ${rdpmcUs.toFixed(2)} µs, ` +
    `so the agent at 1.0 would cost ~${(projectedCpu - none.cpuMicrosPerRequest).toFixed(1)} µs per request, ` +
    `a throughput loss of about ${pct(projectedLoss)} (1 − ${none.cpuMicrosPerRequest.toFixed(1)}/${projectedCpu.toFixed(1)}).`
  );
}

/** Is a difference larger than the run-to-run spread? Says so for each instrumented variant. */
function noiseNote(runs: RunResult[], summaries: Map<AppVariant, VariantSummary>): string {
  const none = summaries.get('none')!;
  const rounds = runs.filter((r) => r.variant === 'none').length;
  if (rounds < 2) return 'One round only (BENCH_QUICK): no spread to compare differences against.';
  const spread = (none.maxRps - none.minRps) / none.medianRps;
  const verdicts = APP_VARIANTS.filter((v) => v !== 'none').map((variant) => {
    const s = summaries.get(variant)!;
    const diff = 1 - s.medianRps / none.medianRps;
    const overlaps = s.maxRps >= none.minRps && s.minRps <= none.maxRps;
    return `${variant} ${diff >= 0 ? '−' : '+'}${pct(Math.abs(diff))} (${overlaps ? 'ranges overlap: within noise' : 'ranges disjoint'})`;
  });
  return (
    `Run-to-run spread of the no-agent runs: ${pct(spread)} of the median (min–max over ${rounds} rounds). ` +
    `Differences from no agent: ${verdicts.join('; ')}.`
  );
}

/** Was autocannon, or the server, the limit? */
function bottleneckNote(runs: RunResult[], pinning: boolean, repeated: number): string {
  const loadBusy = Math.max(...runs.map((r) => r.load.loadGeneratorBusy));
  const serverBusy = defined(runs.map((r) => r.serverBusy));
  const serverPart =
    serverBusy.length > 0
      ? `the server process used ${pct(Math.min(...serverBusy), 0)}–${pct(Math.max(...serverBusy), 0)} of a CPU`
      : 'server CPU not available (no /proc)';
  const verdict =
    loadBusy < 0.8 && (serverBusy.length === 0 || Math.min(...serverBusy) > 0.9)
      ? 'the server, not autocannon, is the bottleneck.'
      : 'not every run saturated the server: check whether autocannon or other load limited them.';
  const background = defined(runs.map((r) => r.backgroundBusy));
  const busiest = runs.filter((r) => (r.backgroundBusy ?? 0) > NOISY_BACKGROUND);
  const repeatedPart =
    repeated === 0
      ? ''
      : ` ${repeated} run(s) during which other processes used more than ${pct(NOISY_BACKGROUND, 0)} of a CPU ` +
        'were measured again; the table has the repeats.';
  const backgroundPart =
    background.length === 0
      ? ''
      : ` Other processes used up to ${pct(Math.max(...background), 0)} of a CPU during the measured periods` +
        (busiest.length === 0
          ? '.'
          : ` — more than ${pct(NOISY_BACKGROUND, 0)} in ${busiest.map((r) => `${r.variant}#${r.round}`).join(', ')}, ` +
            'whose req/s is depressed by it, and CPU µs/req too (shared caches and memory bandwidth).') +
        ' Slowdowns from outside this VM (other guests on the host) do not show here; the lowest CPU µs/req ' +
        'column is the least affected by either.';
  return (
    `Bottleneck check: autocannon used at most ${pct(loadBusy, 0)} of ${pinning ? 'its' : 'a'} CPU; ` +
    `${serverPart} during the measured periods: ${verdict}${backgroundPart}${repeatedPart}`
  );
}

if (require.main === module) {
  benchThroughput().then(
    (table) => console.log(renderTable(table)),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
