/**
 * Instructions per request of the throughput benchmark's Express app, with and without the agent, counted by
 * valgrind's callgrind (a CPU simulator: every user-space instruction the process runs, on all its threads).
 *
 * Why: on this VM the CPU time of two runs of the same server spreads by ~20%, and even side by side
 * (agent-ab.ts) a 95% interval is ±2%, the size of Goal 1 itself. Two runs' instruction counts agree to ~2%, and
 * to ~1% without V8's collector and compiler; it is the metric the product itself prefers (`instructions`) where the hardware exposes
 * it; so this table ranks changes of a few thousand instructions per request that CPU time cannot see. What it
 * does not see: the kernel (a syscall's work, so the counter reads of sampled requests, ~1 µs each here), and how
 * fast those instructions run (cache and branch misses). It complements the side-by-side CPU measurement, it does
 * not replace it.
 *
 * Each run: the server under `valgrind --tool=callgrind --instr-atstart=no` (not counting), WARMUP requests of the
 * workload mix, then counting switched on (`callgrind_control -i on`), MEASURED requests, a dump
 * (`callgrind_control -d`), and `callgrind_annotate` to split the count into V8's garbage collector, its
 * optimizing compiler (both partly on background threads, and the noisiest parts) and the rest (JavaScript, V8's
 * runtime and builtins, Node and libuv).
 *
 * sampleRate 0.01 is not counted this way: its sampling windows are wall-clock time (50 ms, one every ~5 s), and
 * under valgrind's slow-down the 6,000 counted requests take about a minute, so they hold some ten windows, a
 * Poisson number, where natively as many requests hold about one; each window's own cost (code deoptimized and
 * compiled again when its hooks go on and off) would weigh ~18 times too much per request. Its cost is given by
 * arithmetic instead: sampleRate 0 (every request counted, none sampled) plus 1% of what sampleRate 1 adds per
 * request. What that leaves out, each window's own cost, is ~1.5k instructions per request natively (docs/agent.md,
 * "Overhead") and is in the side-by-side CPU measurement (agent-ab.ts).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AppVariant, ServerReady } from './apps/server';
import type { BenchTable } from './report';
import { firstMessage, pct, runLoadGenerator, startAppServer, stopServer, VARIANT_LABELS } from './throughput';

const QUICK = process.env.BENCH_QUICK === '1';
const WARMUP_REQUESTS = QUICK ? 2000 : 15_000;
const MEASURED_REQUESTS = QUICK ? 1000 : 6000;
const RUNS = QUICK ? 1 : 2;
const CONNECTIONS = 10;
/** The sample rate whose cost is derived (Goal 1), and the throughput it must keep. */
const GOAL_RATE = 0.01;
const GOAL_KEEP = 0.99;

const VARIANTS: readonly AppVariant[] = ['none', 'noop-middleware', 'agent-0', 'register-0', 'agent-1', 'otel'];

/** Functions of V8's garbage collector and of its compilers, by name, as callgrind_annotate prints them. */
const GC_FUNCTION =
  /Scaveng|Marking|MarkCompact|Sweep|Heap::|heap::|Evacuat|ConcurrentMark|RememberedSet|SlotSet|IterateMaybeWeak|IteratePointers|BodyDescriptor|MinorMC|GCTracer|Worklist|MemoryChunk|PagedSpace|NewSpace|LargeObject|FreeList|Unmapper|TypedSlot|Ephemeron/;
const COMPILER_FUNCTION =
  /compiler::|Maglev|maglev|CompilationJob|OptimizedCompilation|Deoptimiz|interpreter::|BytecodeGenerator|Parser|parsing::|Scanner|Zone::/;

interface Count {
  /** Instructions per measured request: all, the garbage collector's, the compilers'. */
  total: number;
  gc: number;
  compiler: number;
  /** Requests per second while counting (valgrind's speed, not the app's). */
  requestsPerSecond: number;
}

/** Why this benchmark cannot run here (valgrind's tools missing), or undefined. */
export function valgrindMissing(): string | undefined {
  for (const tool of ['valgrind', 'callgrind_control', 'callgrind_annotate']) {
    if (spawnSync(tool, ['--version']).error !== undefined) {
      return `${tool} not found: install valgrind (Debian: apt-get install -y valgrind)`;
    }
  }
  return undefined;
}

/** Splits a callgrind dump by function: all instructions, the GC's and the compilers'. */
function splitCount(file: string): { total: number; gc: number; compiler: number } {
  const annotated = execFileSync('callgrind_annotate', ['--inclusive=no', '--threshold=100', file], {
    encoding: 'utf8',
    maxBuffer: 256 * 2 ** 20,
  });
  let total = 0;
  let gc = 0;
  let compiler = 0;
  for (const line of annotated.split('\n')) {
    const match = /^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$/.exec(line);
    if (match === null || (match[2] as string).includes('PROGRAM TOTALS')) continue;
    const instructions = Number((match[1] as string).replaceAll(',', ''));
    const fn = match[2] as string;
    total += instructions;
    if (GC_FUNCTION.test(fn)) gc += instructions;
    else if (COMPILER_FUNCTION.test(fn)) compiler += instructions;
  }
  return { total, gc, compiler };
}

async function waitForFile(dir: string, suffix: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = readdirSync(dir).find((name) => name.endsWith(suffix));
    if (found !== undefined) {
      const file = path.join(dir, found);
      // callgrind writes the totals line last.
      if (/^totals:/m.test(readFileSync(file, 'utf8'))) return file;
    }
    if (Date.now() > deadline) throw new Error(`instructions: no callgrind dump in ${dir} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** One run of `variant` under callgrind. */
async function countOnce(variant: AppVariant): Promise<Count> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-bench-instructions-'));
  const wrapper = [
    'valgrind',
    '--tool=callgrind',
    '--instr-atstart=no',
    // V8 writes and rewrites machine code; valgrind must notice (it checks code outside files).
    '--smc-check=all-non-file',
    `--callgrind-out-file=${path.join(dir, 'callgrind.out.%p')}`,
    '--log-file=/dev/null',
  ];
  const server = startAppServer(variant, `file:${path.join(dir, 'samples.ndjson')}`, false, wrapper);
  try {
    const ready = await firstMessage<ServerReady>(server, `${variant} under valgrind`);
    const url = `http://127.0.0.1:${ready.port}`;
    const load = async (amount: number) => {
      const result = await runLoadGenerator({ url, connections: CONNECTIONS, durationSeconds: 0, amount }, false);
      if (result.requests !== amount || result.errors > 0) {
        throw new Error(
          `instructions: ${variant}: ${result.requests} of ${amount} requests answered 2xx, ${result.errors} errors`,
        );
      }
      return result;
    };
    await load(WARMUP_REQUESTS);
    const pid = String(server.pid);
    execFileSync('callgrind_control', ['-i', 'on', pid], { stdio: 'ignore' });
    const measured = await load(MEASURED_REQUESTS);
    execFileSync('callgrind_control', ['-d', pid], { stdio: 'ignore' });
    const split = splitCount(await waitForFile(dir, `${pid}.1`, 120_000));
    return {
      total: split.total / MEASURED_REQUESTS,
      gc: split.gc / MEASURED_REQUESTS,
      compiler: split.compiler / MEASURED_REQUESTS,
      requestsPerSecond: measured.requests / measured.durationSeconds,
    };
  } finally {
    await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
  }
}

const thousands = (n: number) => `${(n / 1000).toFixed(1)}k`;
const signedThousands = (n: number) => `${n >= 0 ? '+' : '−'}${(Math.abs(n) / 1000).toFixed(1)}k`;
const signedPct = (n: number) => `${n >= 0 ? '+' : '−'}${Math.abs(n * 100).toFixed(1)}%`;

export async function benchInstructions(): Promise<BenchTable> {
  const title = 'Instructions per request (valgrind callgrind): the agent without the noise of CPU time';
  const missing = valgrindMissing();
  if (missing !== undefined) {
    process.stderr.write(`instructions: ${missing}; table skipped\n`);
    return { title, description: `Not measured: ${missing}.`, columns: ['variant'], rows: [] };
  }
  const counts = new Map<AppVariant, Count[]>();
  // Two at a time (valgrind runs a process's threads one at a time: one core each), the runs of a variant together.
  const queue = VARIANTS.flatMap((variant) => Array.from({ length: RUNS }, () => variant));
  for (let i = 0; i < queue.length; i += 2) {
    await Promise.all(
      queue.slice(i, i + 2).map(async (variant) => {
        const count = await countOnce(variant);
        counts.set(variant, [...(counts.get(variant) ?? []), count]);
        process.stderr.write(
          `instructions: ${variant}: ${thousands(count.total)} per request (GC ${thousands(count.gc)}, compiler ${thousands(count.compiler)}), ${count.requestsPerSecond.toFixed(0)} req/s under valgrind\n`,
        );
      }),
    );
  }

  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const of = (variant: AppVariant, pick: (c: Count) => number) => mean((counts.get(variant) ?? []).map(pick));
  const mutator = (c: Count) => c.total - c.gc - c.compiler;
  const total = (variant: AppVariant) => of(variant, (c) => c.total);
  const rest = (variant: AppVariant) => of(variant, mutator);
  const change = (value: number, base: number) => `${signedThousands(value - base)} (${signedPct(value / base - 1)})`;
  const rows: (string | number)[][] = VARIANTS.map((variant) => {
    const runs = counts.get(variant) ?? [];
    return [
      VARIANT_LABELS[variant],
      runs.map((c) => thousands(c.total)).join(', '),
      variant === 'none' ? '—' : change(total(variant), total('none')),
      thousands(of(variant, (c) => c.gc)),
      thousands(of(variant, (c) => c.compiler)),
      runs.map((c) => thousands(mutator(c))).join(', '),
      variant === 'none' ? '—' : change(rest(variant), rest('none')),
    ];
  });
  // sampleRate 0.01, derived: every request pays what sampleRate 0 pays, 1% of them what sampleRate 1 adds to it.
  const sampledExtra = (pick: (v: AppVariant) => number) => pick('agent-1') - pick('agent-0');
  const derived = (zero: AppVariant, pick: (v: AppVariant) => number) => pick(zero) + GOAL_RATE * sampledExtra(pick);
  for (const [zero, atGoalRate] of [
    ['agent-0', 'agent-0.01'],
    ['register-0', 'register-0.01'],
  ] as const) {
    rows.push([
      `${VARIANT_LABELS[atGoalRate]} (derived: sampleRate 0 + ${GOAL_RATE} × what sampleRate 1 adds)`,
      thousands(derived(zero, total)),
      change(derived(zero, total), total('none')),
      '',
      '',
      thousands(derived(zero, rest)),
      change(derived(zero, rest), rest('none')),
    ]);
  }
  const spread = (variant: AppVariant) => {
    const totals = (counts.get(variant) ?? []).map((c) => c.total);
    return totals.length < 2 ? 0 : (Math.max(...totals) - Math.min(...totals)) / mean(totals);
  };
  const worstSpread = Math.max(...VARIANTS.map(spread));
  // Throughput at a saturated CPU goes as 1 / instructions per request (at equal instructions per second).
  const keep = (instructions: number) => total('none') / instructions;
  const goal1 = (zero: AppVariant, label: string) => {
    const kept = keep(derived(zero, total));
    return `${label} ${pct(kept)} (${kept >= GOAL_KEEP ? 'met' : 'missed'})`;
  };
  const agentLoss = 1 - keep(total('agent-1'));
  const otelLoss = 1 - keep(total('otel'));
  return {
    title,
    description:
      `bench/src/instructions.ts: the throughput benchmark's Express app (bench/src/apps/app.ts) under \`valgrind --tool=callgrind\`, Node ${process.version}, ` +
      `${RUNS} run(s) per variant, each a fresh process: ${WARMUP_REQUESTS.toLocaleString('en-US')} requests of the workload mix (${CONNECTIONS} connections) not counted, ` +
      `then the instructions of ${MEASURED_REQUESTS.toLocaleString('en-US')} requests, all threads, user space only (a syscall's work in the kernel is not counted). ` +
      '"GC" and "compiler" are V8\'s garbage collector and optimizing compiler, by function name; "JS, runtime, Node" is the rest. ' +
      `sampleRate ${GOAL_RATE} is derived, not counted: its windows are wall-clock time, and under valgrind's slow-down a window falls ` +
      'on ~18 times fewer requests than natively, so its own cost would weigh that much too much.',
    columns: [
      'variant',
      'instructions per request (runs)',
      'vs no agent',
      'of which GC',
      'of which compiler',
      'JS, runtime, Node (runs)',
      'JS, runtime, Node vs no agent',
    ],
    rows,
    notes: [
      `**Goal 1 in instructions (keep ≥ ${pct(GOAL_KEEP, 0)} at sampleRate ${GOAL_RATE}, derived as above; throughput taken as 1 / instructions): ` +
        `${goal1('agent-0', '`app.use(agent.express())`')}, ${goal1('register-0', '`--require @ergometer/agent/register`')}.** ` +
        "Not counted: each sampling window's fixed cost and the counter reads' time in the kernel.",
      `**Goal 2 in instructions (lose at most a third of what OpenTelemetry loses, at sampleRate 1): the agent loses ${pct(agentLoss)}, ` +
        `OpenTelemetry ${pct(otelLoss)}: ${pct(agentLoss / otelLoss, 0)} of its loss (${agentLoss <= otelLoss / 3 ? 'met' : 'missed'}).** ` +
        'Its counter reads (16–17 per sampled request) are syscalls here, and their time in the kernel is not counted: these counts are about what the agent would cost with `rdpmc`, where a read is a few dozen user-space instructions.',
      RUNS > 1
        ? `Runs of one variant differ by up to ${pct(worstSpread)} in all instructions (most of it the garbage collector and the ` +
          'compiler, whose work depends on timing); the last two columns leave those out and differ less.'
        : 'One run per variant (quick mode).',
    ],
  };
}
