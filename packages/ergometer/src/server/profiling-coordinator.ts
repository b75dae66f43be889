/**
 * Which processes profile (`POST /v1/profiling`). A profiling process pays the profiler's cost on every
 * request (docs/agent.md, "Profiler"), and a function's cost per request comes from its *share* of its
 * endpoint's samples, so a few processes of each commit are enough. A fixed fraction drawn by each process
 * alone cannot promise that a canary of two processes has any: the collector, which hears from every process,
 * can. Each agent whose `profile.processFraction` is `collector` asks once at start (its profiler loaded, not yet
 * started) and then checks in once per profile period, so that the collector knows which processes of a commit
 * are alive.
 *
 * The rule, per service × commit, when a process asks: it profiles if fewer than `minProcesses` of the commit's
 * live processes do, or fewer than `processFraction` of them (itself included). A decision is final for the
 * life of the process: starting V8's profiler late misses code compiled before it (Node 22+), and stopping it
 * after it has recorded under load leaves a cost behind, so the collector never turns a process's profiler on or
 * off later. Processes that stop
 * checking in are forgotten after three of their periods, which frees their places for processes that start
 * after them. State is in memory: after a restart of the collector, each process's next check-in says what it
 * decided, and the count is whole again within one period.
 */

export interface ProfilingPolicy {
  /** At least this many live processes of each service × commit profile (while that many have asked). */
  minProcesses: number;
  /** Beyond `minProcesses`, about this fraction of a commit's live processes profile. */
  processFraction: number;
}

/**
 * At least 2 per commit, so that a canary of one or two processes has profiles for its rollout alert's root
 * cause; beyond that a tenth. Each profiling process sends ~600 labelled samples a minute at the profiler's
 * defaults, so a tenth of a large commit is plenty for shares of an endpoint's cost, and a fleet pays a tenth of
 * the profiler's per-process cost (docs/agent.md, "Which processes profile").
 */
export const DEFAULT_PROFILING_POLICY: Readonly<ProfilingPolicy> = { minProcesses: 2, processFraction: 0.1 };

/** What a process says when it checks in. */
export interface CheckIn {
  service: string;
  commit: string;
  host: string;
  /** Unique per process (the agent draws a random id at start). */
  instance: string;
  /** `asking` on the first contact; afterwards what it decided. */
  state: 'asking' | 'profiling' | 'idle';
  /** How often it checks in, ms: the process is forgotten after three of these without a word. */
  checkInMs: number;
}

export interface CheckInAnswer {
  profile: boolean;
}

interface Instance {
  profiling: boolean;
  /** When it is forgotten unless it checks in again: three of its periods after its last word. */
  forgetAtMs: number;
}

/** How often the whole table is swept of processes that stopped checking in. */
const SWEEP_EVERY_MS = 60_000;
/** A process is forgotten after this many of its check-in periods without one. */
const MISSED_CHECK_INS = 3;

export class ProfilingCoordinator {
  /** service \0 commit → instance → state. */
  private readonly commits = new Map<string, Map<string, Instance>>();
  private instances = 0;
  private lastSweepMs = 0;

  constructor(
    readonly policy: Readonly<ProfilingPolicy> = DEFAULT_PROFILING_POLICY,
    private readonly now: () => number = Date.now,
    /** Bound on the processes remembered; beyond it a process is answered by a draw of `processFraction`. */
    private readonly maxInstances = 100_000,
    private readonly random: () => number = Math.random,
  ) {}

  checkIn(request: CheckIn): CheckInAnswer {
    const now = this.now();
    if (now - this.lastSweepMs >= SWEEP_EVERY_MS) this.sweep(now);
    const key = `${request.service}\0${request.commit}`;
    let commit = this.commits.get(key);
    const forgetAtMs = now + MISSED_CHECK_INS * request.checkInMs;
    const known = commit?.get(request.instance);
    if (known !== undefined) {
      // A repeated question (an answer lost on the way) gets the same answer; a check-in renews.
      known.forgetAtMs = forgetAtMs;
      if (request.state !== 'asking') known.profiling = request.state === 'profiling';
      return { profile: known.profiling };
    }
    if (this.instances >= this.maxInstances) return { profile: this.random() < this.policy.processFraction };
    if (commit === undefined) {
      commit = new Map();
      this.commits.set(key, commit);
    }
    let profiling: boolean;
    if (request.state === 'asking') {
      const others = tally(commit, now);
      const live = others.processes + 1;
      profiling = others.profiling < this.policy.minProcesses || others.profiling < this.policy.processFraction * live;
    } else {
      // A process this collector does not know (it restarted) says what it decided earlier.
      profiling = request.state === 'profiling';
    }
    commit.set(request.instance, { profiling, forgetAtMs });
    this.instances++;
    return { profile: profiling };
  }

  /** Live processes that checked in, and how many of them profile. */
  counts(): { processes: number; profiling: number } {
    const now = this.now();
    const total = { processes: 0, profiling: 0 };
    for (const commit of this.commits.values()) {
      const { processes, profiling } = tally(commit, now);
      total.processes += processes;
      total.profiling += profiling;
    }
    return total;
  }

  private sweep(now: number): void {
    this.lastSweepMs = now;
    for (const [key, commit] of this.commits) {
      for (const [id, instance] of commit) {
        if (now > instance.forgetAtMs) {
          commit.delete(id);
          this.instances--;
        }
      }
      if (commit.size === 0) this.commits.delete(key);
    }
  }
}

/** The live processes of one commit at `now`, and how many of them profile. */
function tally(commit: Map<string, Instance>, now: number): { processes: number; profiling: number } {
  let processes = 0;
  let profiling = 0;
  for (const instance of commit.values()) {
    if (now > instance.forgetAtMs) continue;
    processes++;
    if (instance.profiling) profiling++;
  }
  return { processes, profiling };
}
