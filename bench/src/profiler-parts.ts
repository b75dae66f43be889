/**
 * The profiler's cost taken apart, in this process: V8's sampling at several rates, native calls while a
 * profile records, and labelling a unit of async work with its context (AsyncContextFrame only). Each row
 * alternates a phase with @datadog/pprof's time profiler off and one with it on (300 ms each, 30 cycles),
 * measures process CPU (all threads: V8's profiler thread included) per unit of work in both, and gives the
 * mean ratio with a 95% interval over cycles (cycleCost, as the paired HTTP measurement). The units are small
 * and fixed, so the host's drift, which moves separate runs by tens of percent on this VM, cancels within a
 * cycle. docs/agent.md ("Cost") reads these rows.
 */
import { types } from 'node:util';
import { time } from '@datadog/pprof';
import { isAsyncContextFrameActive } from '@datadog/pprof/out/src/async-context-frame';
import { cpuMicros, type PairedCycle } from './apps/paired-server';
import { cycleCost } from './paired';
import type { BenchTable } from './report';

const QUICK = process.env.BENCH_QUICK === '1';
const CYCLES = QUICK ? 6 : 30;
const PHASE_MS = 300;

/** Pure JavaScript: a short loop, no call into C++. */
function jsWork(): number {
  let x = 0;
  for (let i = 0; i < 20_000; i++) x += Math.sqrt(i + x * 1e-9);
  return x;
}

/** 200 calls of a C++ binding (util.types.isPromise). */
function nativeWork(): number {
  let x = 0;
  for (let i = 0; i < 200; i++) x += types.isPromise(i) ? 1 : 0;
  return x;
}

/** A small unit of async work: a loop, an await, a setImmediate hop. */
async function asyncWork(): Promise<number> {
  let x = 0;
  for (let k = 0; k < 2000; k++) x += Math.sqrt(k);
  await null;
  await new Promise((resolve) => setImmediate(resolve));
  return x;
}

interface Part {
  label: string;
  intervalMicros: number;
  /** One unit of work; `labelled` while the profiler runs in a labelling row. */
  unit: (labelled: boolean) => unknown;
  /**
   * `sampling`: a CPU-bound loop, the extra CPU given per stack sample; `native`: no per-item figure;
   * `labelling`: each unit labelled (AsyncContextFrame), the extra CPU given per unit of work.
   */
  kind: 'sampling' | 'native' | 'labelling';
}

/** CPU per unit of work over one phase, with 8 units in flight for async work. */
async function phase(part: Part, on: boolean): Promise<{ cpuMicros: number; requests: number }> {
  const labelled = on && part.kind === 'labelling';
  const start = cpuMicros();
  const end = performance.now() + PHASE_MS;
  let units = 0;
  while (performance.now() < end) {
    const batch: unknown[] = [];
    for (let k = 0; k < 8; k++) batch.push(part.unit(labelled));
    await Promise.all(batch);
    units += 8;
  }
  return { cpuMicros: cpuMicros() - start, requests: units };
}

async function measure(part: Part): Promise<(string | number)[]> {
  const cycles: PairedCycle[] = [];
  for (let w = 0; w < 2; w++) await phase(part, false);
  for (let c = 0; c < CYCLES; c++) {
    const off = await phase(part, false);
    time.start({
      intervalMicros: part.intervalMicros,
      durationMillis: PHASE_MS * 2,
      withContexts: true,
      collectCpuTime: true,
      collectAsyncId: false,
      useCPED: part.kind === 'labelling',
    });
    // The start logs the compiled code: not part of the steady cost.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const on = await phase(part, true);
    time.stop(false);
    cycles.push({ on, off });
  }
  const cost = cycleCost(cycles);
  const row: (string | number)[] = [
    part.label,
    `${((cost.ratio - 1) * 100).toFixed(1)}%`,
    `${((cost.low - 1) * 100).toFixed(1)}% to ${((cost.high - 1) * 100).toFixed(1)}%`,
  ];
  if (cost.low <= 1) {
    // An interval that holds zero says nothing about the cost of one sample or unit.
    row.push('within noise');
  } else if (part.kind === 'labelling') {
    const offPerUnit = cycles.reduce((s, c) => s + c.off.cpuMicros, 0) / cycles.reduce((s, c) => s + c.off.requests, 0);
    row.push(`${((cost.ratio - 1) * offPerUnit).toFixed(2)} µs per unit of work`);
  } else if (part.kind === 'sampling') {
    // The loop keeps one CPU busy: the extra share of it is each sample's CPU times samples per second, so a
    // sample costs that share of the interval between two samples.
    row.push(`${((cost.ratio - 1) * part.intervalMicros).toFixed(0)} µs per sample`);
  } else row.push('—');
  return row;
}

export async function benchProfilerParts(): Promise<BenchTable> {
  const parts: Part[] = [
    { label: 'sampling at 1 kHz, a JavaScript loop', intervalMicros: 1_000, unit: jsWork, kind: 'sampling' },
    { label: 'sampling at 100 Hz, a JavaScript loop', intervalMicros: 10_000, unit: jsWork, kind: 'sampling' },
    { label: 'sampling at 10 Hz, a JavaScript loop', intervalMicros: 100_000, unit: jsWork, kind: 'sampling' },
    {
      label: 'sampling at 10 Hz, 200 calls of a C++ binding (util.types.isPromise)',
      intervalMicros: 100_000,
      unit: nativeWork,
      kind: 'native',
    },
  ];
  let acf = false;
  try {
    acf = isAsyncContextFrameActive();
  } catch {
    // An addon without the probe: no labelling row.
  }
  if (acf) {
    parts.push({
      label: 'sampling at 10 Hz + labelling each unit of async work (runWithContext)',
      intervalMicros: 100_000,
      kind: 'labelling',
      unit: (labelled) => (labelled ? time.runWithContext({}, asyncWork) : asyncWork()),
    });
  }
  const rows: (string | number)[][] = [];
  for (const part of parts) {
    process.stderr.write(`profiler parts: ${part.label}\n`);
    rows.push(await measure(part));
  }
  return {
    title: `Profiler cost taken apart, in one process (Node ${process.version})`,
    description:
      `bench/src/profiler-parts.ts: @datadog/pprof's time profiler (contexts and CPU time on, as the agent starts it) off and on in ` +
      `alternating ${PHASE_MS} ms phases, ${CYCLES} cycles per row; process CPU (all threads) per unit of work, on vs off, ` +
      'mean ratio over cycles with its 95% interval. The per-sample cost is the extra CPU per second divided by the samples per ' +
      'second; the labelling row (AsyncContextFrame, Node 24) puts its extra CPU per unit of work.',
    columns: ['part', 'CPU on vs off', '95% interval', 'per'],
    rows,
    notes: acf
      ? []
      : [
          'No labelling row: this Node.js has no AsyncContextFrame (the agent switches labels with an async_hooks hook here).',
        ],
  };
}
