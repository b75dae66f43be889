import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { type CounterSource, openCounter } from '@ergometer/counters';
import { type BenchTable, renderTable } from './report';

/**
 * Reads per round and rounds per row. Rounds are short (tens of ms) and many, and the best is kept:
 * on a shared machine the least-disturbed round is the closest to the cost of a read.
 */
const ITERATIONS = 20_000;
const ROUNDS = 15;
/** Counter reads per sampled request: start and end, and a before/after pair per async hop (~2 hops). */
const READS_PER_REQUEST = 6;
/** Estimate of rdpmc itself on bare metal: a user-space instruction, no kernel entry. */
const RDPMC_NS = { low: 20, high: 40 } as const;

/** What bench/native/floor.c prints: best ns per read of each syscall, null where unavailable. */
interface FloorReport {
  nsPerRead: Record<FloorName, number | null>;
  unavailable: Partial<Record<FloorName, string>>;
}
type FloorName =
  | 'task_clock_read'
  | 'thread_cputime'
  | 'instructions_read'
  | 'instructions_rdpmc'
  | 'getrusage'
  | 'monotonic';
const FLOOR_NAMES: readonly FloorName[] = [
  'task_clock_read',
  'thread_cputime',
  'instructions_read',
  'instructions_rdpmc',
  'getrusage',
  'monotonic',
];

/** What each floor measurement is, as shown in the table. */
const FLOOR_LABELS: Record<FloorName, string> = {
  task_clock_read: 'read(2) on a task-clock perf fd',
  thread_cputime: 'clock_gettime(CLOCK_THREAD_CPUTIME_ID)',
  instructions_read: 'read(2) on an instructions perf fd',
  instructions_rdpmc: 'rdpmc via the perf mmap page',
  getrusage: 'getrusage(RUSAGE_SELF)',
  monotonic: 'clock_gettime(CLOCK_MONOTONIC) (vDSO)',
};

/** Best ns per call of `read` over {@link ROUNDS} rounds of {@link ITERATIONS} calls. */
function bestNsPerRead(read: () => number): number {
  let best = Number.POSITIVE_INFINITY;
  let sink = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < ITERATIONS; i++) sink += read();
    const elapsed = Number(process.hrtime.bigint() - start);
    best = Math.min(best, elapsed / ITERATIONS);
  }
  if (Number.isNaN(sink)) throw new Error('unreachable: keeps the reads observable');
  return best;
}

/** One row's JS measurement, run in its own worker. */
interface ReadJob {
  counterReadJob:
    | 'js-cpu-usage'
    | 'instructions'
    | 'task-clock'
    | 'thread-cputime'
    | 'cpuUsage'
    | 'hrtime'
    | 'binding-only';
}
type ReadResult = { ns: number; source?: CounterSource; rdpmc?: boolean } | { error: string };

function isReadJob(data: unknown): data is ReadJob {
  return typeof data === 'object' && data !== null && 'counterReadJob' in data;
}

/** Worker side: measures one row and posts the result. Counters are per thread, so it opens its own. */
function runReadJob(job: ReadJob): ReadResult {
  const what = job.counterReadJob;
  if (what === 'cpuUsage') return { ns: bestNsPerRead(() => process.cpuUsage().user) };
  if (what === 'hrtime') return { ns: bestNsPerRead(() => Number(process.hrtime.bigint())) };
  if (what === 'binding-only') {
    // A closed native counter's read() returns -1 straight away: the N-API call and V8 around it, no syscall.
    const closed = openCounter({ prefer: 'thread-cputime', strict: true });
    closed.close();
    return { ns: bestNsPerRead(() => closed.read()) };
  }
  let counter: ReturnType<typeof openCounter>;
  try {
    counter = openCounter({ prefer: what, strict: what !== 'js-cpu-usage' });
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
  try {
    // Through counter.read(), exactly as the agent calls it.
    return { ns: bestNsPerRead(() => counter.read()), source: counter.source, rdpmc: counter.rdpmc };
  } finally {
    counter.close();
  }
}

/**
 * Runs one row in a fresh worker: its own isolate, so every row starts from
 * the same JIT state and its call site stays monomorphic, as in the agent
 * (which holds one counter), whatever was measured before it.
 */
function measureInWorker(what: ReadJob['counterReadJob']): Promise<ReadResult> {
  const job: ReadJob = { counterReadJob: what };
  return new Promise((resolve, reject) => {
    const worker = new Worker(__filename, { workerData: job });
    worker.once('message', (result: ReadResult) => resolve(result));
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`counter-read worker for ${what} exited with ${code}`)));
  });
}

function compileAndRunFloor(): FloorReport | { error: string } {
  const source = path.join(__dirname, '..', '..', 'native', 'floor.c');
  const countersNative = path.join(path.dirname(require.resolve('@ergometer/counters/package.json')), 'native');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-floor-'));
  try {
    const binary = path.join(dir, 'floor');
    const cc = spawnSync('cc', ['-O2', '-std=gnu11', '-I', countersNative, source, '-o', binary], { encoding: 'utf8' });
    if (cc.error) return { error: `no C compiler: ${cc.error.message}` };
    if (cc.status !== 0) return { error: `cc failed: ${cc.stderr.trim()}` };
    const run = spawnSync(binary, [String(ITERATIONS), String(ROUNDS)], { encoding: 'utf8' });
    if (run.status !== 0) return { error: `floor exited ${run.status}: ${run.stderr.trim()}` };
    return parseFloorReport(run.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function parseFloorReport(text: string): FloorReport {
  const parsed: unknown = JSON.parse(text);
  if (typeof parsed !== 'object' || parsed === null || !('nsPerRead' in parsed) || !('unavailable' in parsed)) {
    throw new Error(`unexpected output from floor.c: ${text}`);
  }
  const { nsPerRead, unavailable } = parsed as {
    nsPerRead: Record<string, unknown>;
    unavailable: Record<string, unknown>;
  };
  const report: FloorReport = {
    nsPerRead: {
      task_clock_read: null,
      thread_cputime: null,
      instructions_read: null,
      instructions_rdpmc: null,
      getrusage: null,
      monotonic: null,
    },
    unavailable: {},
  };
  for (const name of FLOOR_NAMES) {
    const value = nsPerRead[name];
    if (typeof value === 'number') report.nsPerRead[name] = value;
    else if (value !== null) throw new Error(`floor.c: ${name} is ${String(value)}`);
    const why = unavailable[name];
    if (typeof why === 'string') report.unavailable[name] = why;
  }
  return report;
}

/**
 * True when the kernel isolates its page tables (PTI) on a CPU without PCID: every kernel entry then
 * flushes the TLB, and code with a larger working set than a C loop (V8, N-API) pays to refill it.
 */
function ptiWithoutPcid(): boolean {
  try {
    const meltdown = readFileSync('/sys/devices/system/cpu/vulnerabilities/meltdown', 'utf8');
    const flags = /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
    return meltdown.includes('PTI') && !flags.split(' ').includes('pcid');
  } catch {
    return false;
  }
}

const fmt = (ns: number): string => (ns >= 100 ? ns.toFixed(0) : ns.toFixed(1));

/**
 * ns per counter read from JavaScript, for every source that works here, next
 * to the same syscall (or instruction) timed in C: the gap is what N-API and V8
 * add per read. process.cpuUsage() and process.hrtime.bigint() are there for
 * reference.
 */
export async function benchCounterRead(): Promise<BenchTable> {
  const floor = compileAndRunFloor();
  const floorNs = (name: FloorName): number | null => ('error' in floor ? null : floor.nsPerRead[name]);
  const floorCell = (name: FloorName): string => {
    if ('error' in floor) return `n/a (${floor.error})`;
    const ns = floor.nsPerRead[name];
    return ns === null ? `n/a (${floor.unavailable[name] ?? 'unavailable'})` : fmt(ns);
  };
  const rows: (string | number)[][] = [];
  const notes: string[] = [];
  const addRow = (label: string, floorName: FloorName, jsNs: number): void => {
    const cNs = floorNs(floorName);
    rows.push([
      label,
      FLOOR_LABELS[floorName],
      fmt(jsNs),
      floorCell(floorName),
      cNs === null ? 'n/a' : fmt(jsNs - cNs),
    ]);
  };

  // Each source that works here, through openCounter().read().
  const jsNsBySource: Partial<Record<CounterSource, { ns: number; rdpmc: boolean }>> = {};
  for (const source of ['instructions', 'task-clock', 'thread-cputime', 'js-cpu-usage'] as const) {
    const result = await measureInWorker(source);
    if ('error' in result) {
      notes.push(`\`${source}\` is not measured: ${result.error}.`);
      continue;
    }
    const rdpmc = result.rdpmc === true;
    const floorName: FloorName = {
      instructions: rdpmc ? 'instructions_rdpmc' : 'instructions_read',
      'task-clock': 'task_clock_read',
      'thread-cputime': 'thread_cputime',
      'js-cpu-usage': 'getrusage',
    }[source] as FloorName;
    addRow(`\`${source}\`${rdpmc ? ' (rdpmc)' : ''}: \`openCounter().read()\``, floorName, result.ns);
    jsNsBySource[source] = { ns: result.ns, rdpmc };
  }

  // The binding's own cost, with no syscall behind it.
  const binding = await measureInWorker('binding-only');
  if ('error' in binding) throw new Error(binding.error);
  rows.push([
    '`openCounter().read()` after `close()`: the binding alone',
    'nothing (returns -1 without a syscall)',
    fmt(binding.ns),
    '0',
    fmt(binding.ns),
  ]);

  // What a user would call instead, for reference.
  for (const [what, label, floorName] of [
    ['cpuUsage', '`process.cpuUsage()` (reference)', 'getrusage'],
    ['hrtime', '`process.hrtime.bigint()` (reference; wall clock)', 'monotonic'],
  ] as const) {
    const result = await measureInWorker(what);
    if ('error' in result) throw new Error(result.error);
    addRow(label, floorName, result.ns);
  }

  const auto = openCounter({ prefer: 'auto' });
  const autoSource = auto.source;
  auto.close();
  const autoRead = jsNsBySource[autoSource];
  if (autoRead) {
    const perRequestNs = READS_PER_REQUEST * autoRead.ns;
    notes.push(
      `Per request: the agent reads the counter about ${READS_PER_REQUEST} times for a sampled request (start and ` +
        `end, and a before/after pair per async hop). With \`${autoSource}\`, the source \`auto\` picks here: ` +
        `${READS_PER_REQUEST} × ${fmt(autoRead.ns)} ns ≈ ${(perRequestNs / 1000).toFixed(1)} µs, ` +
        `${(perRequestNs / 1e4).toFixed(2)}% of a request that costs 1 ms of CPU.`,
    );
  }
  const rdpmcRead = jsNsBySource.instructions?.rdpmc ? jsNsBySource.instructions.ns : null;
  if (rdpmcRead !== null) {
    notes.push(
      `With rdpmc, measured here: ${READS_PER_REQUEST} × ${fmt(rdpmcRead)} ns ≈ ` +
        `${fmt(READS_PER_REQUEST * rdpmcRead)} ns per request.`,
    );
  } else {
    const low = READS_PER_REQUEST * (binding.ns + RDPMC_NS.low);
    const high = READS_PER_REQUEST * (binding.ns + RDPMC_NS.high);
    notes.push(
      `With rdpmc (hardware instructions where the kernel sets \`cap_user_rdpmc\`, typically bare metal), a read ` +
        `is the binding alone (${fmt(binding.ns)} ns, measured above) plus rdpmc and the mmap-page seqlock, which ` +
        `run in user space without entering the kernel: an estimated ${RDPMC_NS.low}–${RDPMC_NS.high} ns, not ` +
        `measured on this machine. ${READS_PER_REQUEST} reads would cost about ${fmt(low)}–${fmt(high)} ns per ` +
        `request${autoRead ? ` instead of ${fmt(READS_PER_REQUEST * autoRead.ns)} ns` : ''}.`,
    );
  }
  const syscallNs = floorNs('thread_cputime');
  const vdsoNs = floorNs('monotonic');
  if (syscallNs !== null && vdsoNs !== null) {
    notes.push(
      `The kernel entry is the cost: a syscall (\`CLOCK_THREAD_CPUTIME_ID\` is not served by the vDSO) takes ` +
        `${fmt(syscallNs)} ns in C here, ${(syscallNs / binding.ns).toFixed(0)}× the binding alone and ` +
        `${(syscallNs / vdsoNs).toFixed(0)}× a vDSO clock read.`,
    );
  }
  const syscallOverheads = (['task-clock', 'thread-cputime'] as const).flatMap((source) => {
    const js = jsNsBySource[source]?.ns;
    const c = floorNs(source === 'task-clock' ? 'task_clock_read' : 'thread_cputime');
    return js === undefined || c === null ? [] : [js - c];
  });
  if (syscallOverheads.length > 0 && syscallOverheads.every((ns) => ns > 2 * binding.ns)) {
    notes.push(
      `The overhead of the syscall rows (${syscallOverheads.map(fmt).join(' and ')} ns) is more than the binding ` +
        `alone (${fmt(binding.ns)} ns): it is the difference of two timings taken in separate processes, so it ` +
        `carries the noise of both, and a syscall also slows the code around it` +
        (ptiWithoutPcid()
          ? ': this kernel uses page-table isolation on a CPU without PCID, so every syscall flushes the TLB, ' +
            "and V8's larger working set pays more to refill it than the C loop does (our reading, not measured)."
          : '.'),
    );
  }
  if ('error' in floor) notes.push(`The C floor was not measured: ${floor.error}.`);

  return {
    title: 'Counter read cost',
    description:
      `ns per read from JavaScript through \`openCounter().read()\` for each source that works on this machine ` +
      `(each row in a fresh worker thread), next to the same syscall timed in C (\`bench/native/floor.c\`, ` +
      `\`cc -O2\`); best of ${ROUNDS} rounds of ${ITERATIONS.toLocaleString('en-US')} reads each. The last column ` +
      `is what N-API and V8 add per read.`,
    columns: ['source', 'C floor measures', 'JS ns/read', 'C floor ns/read', 'N-API+JS overhead ns'],
    rows,
    notes,
  };
}

if (!isMainThread && isReadJob(workerData)) {
  parentPort?.postMessage(runReadJob(workerData));
} else if (require.main === module) {
  benchCounterRead().then(
    (table) => console.log(renderTable(table)),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
