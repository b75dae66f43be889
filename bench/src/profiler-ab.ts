import path from 'node:path';
import { loadInterruptSampler } from '@ergometer/counters';
import type { ProfilerRun } from './apps/server';
import type { BenchTable } from './report';
import {
  describeCost,
  describeLoad,
  describePinning,
  goalVerdict,
  type LabelledPair,
  measurePairs,
  type Pair,
  type PairCost,
  type PairRound,
  pairCost,
  pairRows,
  type SideBySideSettings,
} from './side-by-side';
import { pct } from './throughput';

/**
 * The profiler at its real defaults (a 60 s period) against no profiler, measured side by side
 * (bench/src/side-by-side.ts): the throughput app with the agent at sampleRate 0.01, with and without the
 * profiler, saturated (the goal is a loss of throughput) and at a fixed rate; a fresh pair of processes per
 * round.
 *
 * Why not the profiler benchmark's separate runs: their profiler-off runs alone spread over ~24% of CPU
 * per request, far more than the 2% goal. Why not the paired in-process phases: they cannot see what a
 * profiler that has started once leaves behind in the process, and they use a 2 s period.
 */

/** What the default profiler runs on here: its sampler and schedule, and why `auto` did not take the interrupt sampler. */
type DefaultProfiler = Pick<
  import('../../packages/agent/src/profile/profiler').Profiler,
  'sampler' | 'schedule' | 'samplerFallback' | 'windowMs' | 'samplingIntervalMicros' | 'labelFraction'
>;

/** `sampler, schedule`, or `no profiler`. */
function describeRun(run: ProfilerRun | undefined): string {
  return run === undefined ? 'no profiler' : `${run.sampler}, ${run.schedule}`;
}

/**
 * Asks the agent itself: a Profiler made with the default options (it starts nothing until start()) says which
 * sampler `auto` took and how it realises the duty cycle. From V8 12 on (Node 22, 24) the interrupt sampler in
 * windows where its addon is built for this Node.js; else V8's profiler, which records windows on Node 20 and from
 * Node 22 on samples all the time instead (docs/agent.md, "How the duty cycle is realised"). The modules are
 * internal to the agent: loaded by path, as bench/src/exporter.ts does.
 */
function defaultProfiler(): DefaultProfiler {
  const dist = path.dirname(require.resolve('@ergometer/agent'));
  const { resolveOptions } = require(
    path.join(dist, 'options.js'),
  ) as typeof import('../../packages/agent/src/options');
  const { Profiler } = require(
    path.join(dist, 'profile', 'profiler.js'),
  ) as typeof import('../../packages/agent/src/profile/profiler');
  // No environment: the defaults, whatever ERGOMETER_PROFILE_* this shell has.
  const options = resolveOptions({ service: 'bench', collector: 'file:/dev/null', profile: { enabled: true } }, {});
  return new Profiler(options.profile, () => undefined);
}

/** Goal: the profiler at its defaults costs at most 2% of throughput. */
const GOAL_LOSS = 0.02;
/** More CPU per request than this at a saturated CPU is a throughput loss of more than {@link GOAL_LOSS}. */
const GOAL_MORE_CPU = 1 / (1 - GOAL_LOSS) - 1;

/**
 * In windows, the default records one window (1.5 s at 400 Hz) at a random offset in each minute from the second
 * minute on (the first period, while the app warms up, has none): rounds measure two whole periods after the first,
 * two windows each. Sampling all the time (V8's profiler from Node 22 on), a round of one period (the profile shipped once a
 * minute) holds the whole schedule.
 */
function fullSettings({ schedule }: DefaultProfiler): SideBySideSettings {
  const windows = schedule === 'windows';
  return { rounds: 12, warmupSeconds: windows ? 60 : 10, durationSeconds: windows ? 120 : 60, rate: 'saturated' };
}

/** The default schedule on this Node.js, in words. */
function describeSchedule(profiler: DefaultProfiler): string {
  const { sampler, schedule, samplerFallback, windowMs, samplingIntervalMicros, labelFraction } = profiler;
  const name = sampler === 'interrupt' ? 'the interrupt sampler' : "V8's profiler";
  const why = samplerFallback === undefined ? '' : ` (not the interrupt sampler: ${samplerFallback})`;
  const hz = Math.round(1e6 / samplingIntervalMicros);
  return schedule === 'windows'
    ? `${name}${why}: a ${windowMs / 1000} s window at ${hz} Hz at a random offset in each minute after the first`
    : `${name}${why}: all the time at ${hz} Hz, ${labelFraction < 1 ? `${labelFraction * 100}% of the requests labelled` : 'every request labelled'}`;
}

const PROFILER: Pair = { off: 'agent-0.01', on: 'agent-0.01-profile-defaults-60s' };
/**
 * Saturated (the goal: throughput), and at a fixed rate (each process partly idle, for context). The goal is judged
 * saturated, so its rounds get the time: rounds differ by ~1% (which process of a pair the JIT favours), and 8 of
 * them left an interval of about ±1% around a cost of 1–2%, too wide to tell it from the goal's 2%.
 */
const PAIRS: readonly LabelledPair[] = [
  { label: 'saturated', pair: PROFILER, load: 'saturated' },
  { label: '1000 requests/s', pair: PROFILER, load: 1000, rounds: 4 },
];

/** Where this per-process figure stands in a fleet (the same words in every run). */
const NOT_CHOSEN_NOTE =
  'This is the cost in a process that profiles. With an http collector the default (`processFraction: "collector"`) has ' +
  'about a tenth of each commit\'s processes profile (at least 2); the others never start the profiler: "Profiler not ' +
  'chosen by the collector" measures them, and docs/agent.md ("Which processes profile") combines the two for a fleet.';

export async function benchProfilerSideBySide(): Promise<BenchTable> {
  const profiler = defaultProfiler();
  const { settings, pinning, rounds } = await measurePairs('profiler side by side', PAIRS, fullSettings(profiler));
  // The servers ran what the table describes (an ERGOMETER_PROFILE_* in this shell would change theirs, not it).
  for (const r of rounds.flat()) {
    if (r.onProfiler?.sampler !== profiler.sampler || r.onProfiler.schedule !== profiler.schedule)
      throw new Error(
        `profiler side by side: a server ran ${describeRun(r.onProfiler)}, not the defaults' ${describeRun(profiler)}`,
      );
  }
  const costs = rounds.map((r) => pairCost(r));
  const [saturated, fixed] = costs as [PairCost, PairCost];
  const [saturatedUser, fixedUser] = rounds.map((r) => pairCost(r, 'user')) as [PairCost, PairCost];
  return {
    title: `Profiler at its defaults, side by side with no profiler (Node ${process.version})`,
    description:
      `bench/src/profiler-ab.ts: the throughput benchmark's Express app with the agent at sampleRate 0.01, two processes at once, ` +
      `one with the profiler at its defaults (\`profile: { enabled: true }\`: dutyCycle 0.1, period 60 s; ` +
      `${describeSchedule(profiler)}) ` +
      `and one without, ${describePinning(pinning)}, under two loads, ` +
      `alternating round by round while both have rounds left: ${PAIRS.map(({ label, load }) => `${label}: ${describeLoad(load ?? settings.rate)}`).join('; ')}. ` +
      `${PAIRS.map(({ label }, p) => `${rounds[p]?.length} rounds ${label === 'saturated' ? label : `at ${label}`}`).join(' and ')}, ` +
      `each of ${settings.durationSeconds} s after ${settings.warmupSeconds} s of warm-up with a fresh pair of processes. CPU µs per request: all threads of the server process, from /proc. Saturated, CPU per request is throughput ` +
      `at equal CPU: a ${pct(GOAL_LOSS, 0)} loss of throughput is ${pct(GOAL_MORE_CPU, 2)} more CPU per request. At the fixed rate each ` +
      `process is idle part of the time, and what the profiler spends per unit of time (its timer-driven stack samples) weighs on fewer ` +
      `requests: the cost per request of a service that is not saturated.`,
    columns: [
      'round',
      'no profiler: CPU µs/req',
      'profiler at defaults: CPU µs/req',
      'ratio',
      'of which kernel: µs/req (off / on)',
      'requests (off / on)',
    ],
    rows: pairRows(PAIRS, rounds, costs),
    notes: [
      `**Saturated, CPU per request with the profiler at its defaults changes by ${describeCost(saturated)}: throughput ` +
        `${pct(1 / saturated.ratio - 1)}. Goal: lose at most ${pct(GOAL_LOSS, 0)} of throughput (at most ${pct(GOAL_MORE_CPU, 2)} more ` +
        `CPU per request); ${goalVerdict(saturated, GOAL_MORE_CPU)}**`,
      `At 1000 requests/s CPU per request changes by ${describeCost(fixed)}. User-space CPU alone (without the kernel's time): ` +
        `saturated ${describeCost(saturatedUser)}, at 1000 requests/s ${describeCost(fixedUser)}.`,
      NOT_CHOSEN_NOTE,
    ],
  };
}

/**
 * Both samplers at the defaults, round by round: V8's profiler on one side, the interrupt sampler on the other, each on
 * the schedule `auto` gives it on this Node.js. What `profile.sampler: "auto"` chooses between, measured against each
 * other rather than each against no profiler: the difference of two such measurements carries the noise of both
 * (docs/agent.md, "The interrupt sampler").
 */
const SAMPLERS_FULL: SideBySideSettings = { rounds: 6, warmupSeconds: 60, durationSeconds: 120, rate: 'saturated' };

export async function benchProfilerSamplers(): Promise<BenchTable> {
  const loaded = loadInterruptSampler();
  if (loaded.sampler === null)
    throw new Error(
      `the interrupt sampler does not load on Node ${process.version} (${loaded.loadError.message}): build it with ` +
        '`node packages/counters/scripts/build-native.js --sampler`',
    );
  const profiler = defaultProfiler();
  const variant = PROFILER.on;
  const sampler = (name: 'v8' | 'interrupt') => ({ ERGOMETER_PROFILE_SAMPLER: name });
  const pairs: LabelledPair[] = [
    {
      label: 'saturated',
      load: 'saturated',
      pair: { off: variant, on: variant, env: { off: sampler('v8'), on: sampler('interrupt') } },
    },
  ];
  const { settings, pinning, rounds } = await measurePairs('profiler samplers', pairs, SAMPLERS_FULL);
  const pairRounds = rounds[0] as PairRound[];
  // Each side ran the sampler it asked for (a sampler that cannot start leaves the agent without a profiler).
  for (const r of pairRounds) {
    if (r.offProfiler?.sampler !== 'v8' || r.onProfiler?.sampler !== 'interrupt')
      throw new Error(
        `profiler samplers: the servers ran ${describeRun(r.offProfiler)} and ${describeRun(r.onProfiler)}`,
      );
  }
  const cost = pairCost(pairRounds);
  return {
    title: `The two samplers at the profiler's defaults, side by side (Node ${process.version})`,
    description:
      `bench/src/profiler-ab.ts: the throughput benchmark's Express app with the agent at sampleRate 0.01 and the profiler at its ` +
      `defaults on both sides, two processes at once: one with \`profile.sampler: "v8"\` (V8's profiler), one with ` +
      `\`"interrupt"\` (the interrupt sampler), each on the schedule \`auto\` gives it here, ${describePinning(pinning)}; ` +
      `${describeLoad('saturated')}. ${settings.rounds} rounds of ${settings.durationSeconds} s after ${settings.warmupSeconds} s ` +
      `of warm-up, a fresh pair of processes each. CPU µs per request: all threads of the server process, from /proc. ` +
      `The servers reported their profilers as \`${describeRun(pairRounds[0]?.offProfiler)}\` and ` +
      `\`${describeRun(pairRounds[0]?.onProfiler)}\` ` +
      `(sampler, schedule). Here \`auto\` takes ${describeSchedule(profiler)}.`,
    columns: [
      'round',
      "V8's profiler: CPU µs/req",
      'interrupt sampler: CPU µs/req',
      'ratio',
      'of which kernel: µs/req (V8 / interrupt)',
      'requests (V8 / interrupt)',
    ],
    rows: pairRows(pairs, rounds, [cost]),
    notes: [
      `**The interrupt sampler against V8's profiler, both at the defaults: CPU per request ${describeCost(cost)}.** ` +
        `User-space CPU alone: ${describeCost(pairCost(pairRounds, 'user'))}.`,
    ],
  };
}
