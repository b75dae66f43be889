import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createCollector, openDuckDbStore } from 'ergometer';
import type { BenchTable } from './report';
import {
  describeCost,
  describeLoad,
  describePinning,
  type LabelledPair,
  measurePairs,
  type PairCost,
  pairCost,
  pairRows,
  type SideBySideSettings,
} from './side-by-side';

/**
 * What the profiler's default costs a process the collector does not choose to profile (docs/agent.md, "Which
 * processes profile"): with an http collector, `profile: { enabled: true }` loads the profiler, asks
 * `POST /v1/profiling`, and on a "no" never starts it. In a fleet that is most processes (all but at least 2 and
 * about a tenth of each commit's), so a fleet's cost is the chosen processes' share of the profiler's cost
 * (bench/src/profiler-ab.ts) plus the rest's share of this one.
 *
 * Both processes of each pair send to one real collector (`ergometer`'s, over a DuckDB file in a temporary
 * folder) whose policy chooses nobody (`minProcesses` 0, `processFraction` 0): the process with the profiler is
 * told no at start, as the processes beyond a commit's quota are. Saturated only: the cost in throughput.
 */

const FULL: SideBySideSettings = { rounds: 8, warmupSeconds: 10, durationSeconds: 60, rate: 'saturated' };
const TOKEN = 'bench-ingest-token';

export async function benchProfilerNotChosen(): Promise<BenchTable> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ergometer-bench-not-chosen-'));
  const store = openDuckDbStore({ path: path.join(dir, 'bench.duckdb'), threads: 1 });
  await store.init();
  const collector = createCollector({
    store,
    ingestTokens: [TOKEN],
    readTokens: [`${TOKEN}-read`],
    profiling: { minProcesses: 0, processFraction: 0 },
    log: () => undefined,
  });
  try {
    const { port } = await collector.listen(0, '127.0.0.1');
    const pairs: LabelledPair[] = [
      {
        label: 'saturated',
        pair: {
          off: 'agent-0.01',
          on: 'agent-0.01-profile-defaults-60s',
          collector: { url: `http://127.0.0.1:${port}`, token: TOKEN },
        },
        load: 'saturated',
      },
    ];
    const { settings, pinning, rounds } = await measurePairs('profiler not chosen', pairs, FULL);
    // The process with the profiler asked, and was told no, in the last round (its check-ins keep it counted).
    const asked = collector.profiling.counts();
    if (asked.processes === 0 || asked.profiling !== 0) {
      throw new Error(
        `the collector was asked by ${asked.processes} processes and chose ${asked.profiling}: expected ≥ 1 and 0`,
      );
    }
    const costs = rounds.map((r) => pairCost(r));
    const [cost] = costs as [PairCost];
    return {
      title: `Profiler not chosen by the collector, side by side with no profiler (Node ${process.version})`,
      description:
        "bench/src/profiler-not-chosen.ts: the throughput benchmark's Express app with the agent at sampleRate 0.01, two processes at " +
        'once, one with the profiler at its defaults (`profile: { enabled: true }`, so `processFraction: "collector"`) and one without, ' +
        "both sending to a real collector (ergometer's, over DuckDB, in the benchmark's process) that chooses no process " +
        '(`--profile-min-processes 0 --profile-process-fraction 0`): the agent loads its profiler, asks, is told no and never starts it, as on the ' +
        `processes beyond each commit's quota. Servers ${describePinning(pinning)}; ${describeLoad('saturated')}. ${settings.rounds} rounds of ` +
        `${settings.durationSeconds} s after ${settings.warmupSeconds} s of warm-up, a fresh pair of processes each. CPU µs per request: ` +
        'all threads of the server process, from /proc.',
      columns: [
        'round',
        'no profiler: CPU µs/req',
        'profiler told no: CPU µs/req',
        'ratio',
        'of which kernel: µs/req (off / on)',
        'requests (off / on)',
      ],
      rows: pairRows(pairs, rounds, costs),
      notes: [
        `**A process the collector did not choose: CPU per request ${describeCost(cost)} against no profiler.** A fleet where a ` +
          'fraction f of the processes profile pays f × the profiler\'s cost ("Profiler at its defaults, side by side") + (1 − f) × this.',
      ],
    };
  } finally {
    await collector.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}
