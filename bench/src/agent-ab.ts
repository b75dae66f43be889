import type { BenchTable } from './report';
import {
  describeCost,
  describeLoad,
  describePinning,
  goalVerdict,
  type LabelledPair,
  measurePairs,
  type PairCost,
  pairCost,
  pairRows,
  type SideBySideSettings,
} from './side-by-side';
import { pct } from './throughput';

/**
 * Goal 1 of the agent's overhead (docs/agent.md, "Cost"): at sampleRate 0.01 the app keeps at least 99% of
 * its throughput without the agent. The throughput benchmark's separate runs spread by ~20% here, twenty
 * times the goal; this one measures it side by side (bench/src/side-by-side.ts): the throughput app without
 * the agent and with it at 0.01, two processes at once on one CPU, saturated (the goal is a share of
 * throughput: with the CPU saturated and shared equally, CPU per request is throughput; a fixed rate
 * leaves each process idle part of the time, and weighs what the agent pays per unit of time on fewer
 * requests). Three pairs, alternating round by round: the agent mounted with `app.use(agent.express())`,
 * started by `--require @ergometer/agent/register` (no middleware: node:http), and no agent against no agent
 * (A/A), which shows the method's own error. The kernel's part of CPU time is shown apart: a cost in user space
 * is the process's own code, not the counter reads' syscalls.
 */

/** Keep ≥ 99% of the throughput: at a saturated CPU, at most 1/0.99 − 1 ≈ 1.01% more CPU per request. */
const GOAL_KEEP = 0.99;
const GOAL_MORE_CPU = 1 / GOAL_KEEP - 1;

const FULL: SideBySideSettings = { rounds: 8, warmupSeconds: 10, durationSeconds: 60, rate: 'saturated' };

const AGENT_PAIRS: readonly LabelledPair[] = [
  { label: '`app.use(agent.express())`', pair: { off: 'none', on: 'agent-0.01' } },
  { label: '`--require @ergometer/agent/register`', pair: { off: 'none', on: 'register-0.01' } },
];
/**
 * The method checked against itself: no agent on both sides. It shows what the method alone gives for a cost of
 * zero (which process starts first, which load generator, which port): the bias to allow for in the agent's rows.
 */
const SAME: LabelledPair = { label: 'no agent against no agent (A/A)', pair: { off: 'none', on: 'none' } };
const PAIRS: readonly LabelledPair[] = [...AGENT_PAIRS, SAME];

export async function benchAgentSideBySide(): Promise<BenchTable> {
  const { settings, pinning, rounds } = await measurePairs('agent side by side', PAIRS, FULL);
  const costs = rounds.map((r) => pairCost(r));
  const userCosts = rounds.map((r) => pairCost(r, 'user'));
  const same = costs[AGENT_PAIRS.length] as PairCost;
  return {
    title: `Agent at sampleRate 0.01, side by side with no agent (Node ${process.version})`,
    description:
      `bench/src/agent-ab.ts: the throughput benchmark's Express app without the agent and with it at sampleRate 0.01, two processes at once, ` +
      `${describePinning(pinning)}, ${describeLoad(settings.rate)}. ` +
      `${settings.rounds} rounds of ${settings.durationSeconds} s after ${settings.warmupSeconds} s of ` +
      `warm-up for each way of starting the agent and for no agent against no agent (A/A: the method's own error), alternating, a fresh pair ` +
      `of processes each. CPU µs per request: all threads of the server process, user and kernel time, from /proc; the kernel's part is ` +
      `shown apart. Saturated, CPU per request is throughput at equal CPU: keeping ${pct(GOAL_KEEP, 0)} of the throughput means at most ` +
      `${pct(GOAL_MORE_CPU, 2)} more CPU per request.`,
    columns: [
      'round',
      'no agent: CPU µs/req',
      'agent at 0.01 (A/A: no agent): CPU µs/req',
      'ratio',
      'of which kernel: µs/req (off / on)',
      'requests (off / on)',
    ],
    rows: pairRows(PAIRS, rounds, costs),
    notes: [
      ...AGENT_PAIRS.map(({ label }, p) => {
        const cost = costs[p] as PairCost;
        return (
          `**Goal 1 with ${label}: CPU per request changes by ${describeCost(cost)}, the app keeps ${pct(1 / cost.ratio)} of its ` +
          `throughput. Goal: keep at least ${pct(GOAL_KEEP, 0)} (at most ${pct(GOAL_MORE_CPU, 2)} more CPU); ${goalVerdict(cost, GOAL_MORE_CPU)}** ` +
          `User-space CPU alone (without the kernel's time): ${describeCost(userCosts[p] as PairCost)}.`
        );
      }),
      `The method against itself (A/A, no agent on both sides): ${describeCost(same)}: what it shows for a cost of zero, the bias ` +
        'to allow for in the rows above.',
    ],
  };
}
