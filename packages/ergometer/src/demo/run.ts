/**
 * `ergometer demo`: the whole story on the embedded store, in a few minutes, on real measurements.
 *
 *   collector (in this process: the same collector, store, detectors and alert book as
 *   `ergometer serve`, on a fresh DuckDB file in a temporary directory)
 *       ▲ samples (HTTP, ingest token)
 *   three "hosts": child processes of the sample service (./service.ts), each with its commit
 *       ▲ HTTP
 *   load generator (./load.ts), progress on the terminal
 *
 * Time: only the calendar is compressed. Every cost is CPU the agent measured in a service process.
 * What production spreads over days — rollouts, a canary, a flag turned on — happens here in phases
 * of seconds, each long enough for the detectors' minimum sample count, and the collector stores the
 * samples on a story clock 600 times faster than real time (./story-clock.ts), so that the detectors'
 * windows (a canary needs 5 min of overlap, before/after compares 6 h) and the store's minute
 * aggregates see hours. The detectors run after each phase (and during v2's canary, at each look of the
 * rollout test), as `ergometer serve` runs them every `--detect-interval`, with one setting changed: the minimum effect is 15% instead of 1%, because a
 * shared two-core machine moves a process's CPU per request by up to ~10% from one process or minute
 * to the next, while production learns each endpoint's noise from its own history
 * (docs/getting-started.md, "The demo").
 */
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DetectorScheduler } from '../alerts/scheduler';
import type { AlertSink } from '../alerts/sinks';
import { AlertBook, type AlertRecord } from '../alerts/state';
import { parseOptions } from '../cli/args';
import { type Alert, explainRollout, explanationLines, formatLevel, resolveDetectorConfig } from '../detect/index';
import { ErgometerError } from '../errors';
import { createCollector } from '../server/collector';
import { resolveTokens } from '../server/token-file';
import { openDuckDbStore } from '../store/duckdb/store';
import { DemoDisplay, textTable } from './display';
import {
  checkDemoAlerts,
  DEMO_COMMITS,
  DEMO_FLAG,
  DEMO_SERVICE,
  FLAGGED_ENDPOINT,
  isScriptedRollout,
  REGRESSED_ENDPOINT,
  REGRESSED_FUNCTION,
  rootCauseRequired,
} from './expectations';
import { Fleet } from './fleet';
import { LoadGenerator } from './load';
import { seedDemoDatabase } from './seed';
import type { DemoVersion } from './service';
import { StoryClock, storeOnStoryClock } from './story-clock';

export const DEMO_USAGE = `Usage: ergometer demo [options]

A sample service (feed, profile, search, comments on SQLite, a cache, OpenFeature flags) instrumented
with @ergometer/agent, under load, through four releases: v1 baseline → v2 canary that makes the feed
dearer → v3 that fixes it and turns on a flag that makes search dearer for 20% of users → v4 that
changes nothing. Ergometer says which endpoint, by how much, how sure, since which commit or under
which flag. Then the dashboard keeps serving until Ctrl-C.

  --quick        the short story: each phase just long enough for the detectors (under two minutes)
  --exit         do not keep serving: exit 0 if exactly the expected alerts fired, 1 otherwise (CI)
  --port N       port of the collector and dashboard (default 7070, or a free one if it is taken)
  --story quiet  only v3 and the quiet v4 canary, which must raise no alert about v4 (the false-alarm check
                 the tests repeat)
  --dir D        keep the demo's files (DuckDB, SQLite, tokens, alerts) in D instead of a temporary
                 directory removed at the end; D must be new or empty
`;

const HOSTS = ['web-1', 'web-2'] as const;
/** Requests a new process serves (unsampled) before it takes traffic: V8 needs about this many to settle. */
const WARM_UP_REQUESTS = 1_500;
const ROUTES = [REGRESSED_ENDPOINT, FLAGGED_ENDPOINT, 'GET /profile/:userId', 'GET /posts/:id/comments'];
const LABEL: Record<string, DemoVersion> = Object.fromEntries(
  Object.entries(DEMO_COMMITS).map(([version, commit]) => [commit, version as DemoVersion]),
);

/** The story clock: one real second is ten story minutes; the story starts three days ago. */
export const STORY_SPEED = 600;
const STORY_STARTS_DAYS_AGO = 3;

/**
 * The one detector setting the demo changes (see the file comment): the minimum effect, because
 * a process's CPU per request on a shared two-core machine moves by up to ~10% between processes and
 * minutes, and a demo has no history to learn each endpoint's noise from.
 */
export const DEMO_DETECTOR_SETTINGS = { minEffectPct: 15 } as const;

interface Phase {
  title: string;
  /** What to deploy before the phase: host → version. */
  deploy: Array<[string, DemoVersion]>;
  /** Requests the phase needs before it ends: totals since the start, per commit and endpoint. */
  needs: Array<{ commit: string; route: string; requests: number }>;
  /** Seconds the phase's hosts serve at least, counted once its deploy is done (new processes warmed up). */
  minSeconds: number;
  /**
   * A canary judged while it runs, as a deploy tool's canary analysis does: the detectors also look at each
   * look time of the rollout test, and the phase ends at the first rollout alert on this commit, or once
   * the test's final look is due.
   */
  canaryOf?: string;
}

/** Runs `ergometer demo`; resolves with the exit code. */
export async function demoCommand(argv: string[], stdout: NodeJS.WritableStream = process.stdout): Promise<number> {
  const values = parseOptions(argv, {
    quick: { type: 'boolean' },
    exit: { type: 'boolean' },
    port: { type: 'string' },
    dir: { type: 'string' },
    story: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help === true) {
    stdout.write(DEMO_USAGE);
    return 0;
  }
  const quick = values.quick === true;
  const story = values.story ?? 'full';
  if (story !== 'full' && story !== 'quiet')
    throw new ErgometerError('ERGOMETER_USAGE', 2, `--story: expected full or quiet, got ${JSON.stringify(story)}`);
  const exitWhenDone = values.exit === true;
  const portOption = typeof values.port === 'string' ? Number(values.port) : undefined;
  if (portOption !== undefined && !(Number.isInteger(portOption) && portOption >= 0 && portOption < 65536))
    throw new ErgometerError('ERGOMETER_USAGE', 2, `--port: expected 0…65535, got ${JSON.stringify(values.port)}`);

  const display = new DemoDisplay(stdout);
  const startedMs = Date.now();
  const keptDir = typeof values.dir === 'string' ? path.resolve(values.dir) : undefined;
  if (keptDir !== undefined) {
    await mkdir(keptDir, { recursive: true });
    if ((await readdir(keptDir)).length > 0)
      throw new ErgometerError('ERGOMETER_USAGE', 2, `--dir ${keptDir}: not empty; give a new or empty directory`);
  }
  const dir = keptDir ?? (await mkdtemp(path.join(os.tmpdir(), 'ergometer-demo-')));
  const cleanups: Array<() => Promise<void>> =
    keptDir === undefined ? [async () => rm(dir, { recursive: true, force: true })] : [];
  const cleanUp = async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => undefined);
  };
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  try {
    display.line(`ergometer demo${quick ? ' --quick' : ''}: a sample service, four releases, real CPU measurements`);
    display.line(`  working directory ${dir}${keptDir === undefined ? ' (removed at the end)' : ''}`);
    const dbFile = path.join(dir, 'social.sqlite');
    seedDemoDatabase(dbFile);

    // The server side, as `ergometer serve --db <dir>/ergometer.duckdb` assembles it.
    const store = openDuckDbStore({ path: path.join(dir, 'ergometer.duckdb') });
    await store.init();
    cleanups.push(() => store.close());
    const tokens = await resolveTokens({
      ingestTokens: [],
      readTokens: [],
      file: path.join(dir, 'ergometer.tokens.json'),
    });
    const config = resolveDetectorConfig({ ...DEMO_DETECTOR_SETTINGS });
    const book = new AlertBook(path.join(dir, 'ergometer.alerts.json'));
    const clock = new StoryClock(Date.now(), Date.now() - STORY_STARTS_DAYS_AGO * 86_400_000, STORY_SPEED);
    const collector = createCollector({
      store: storeOnStoryClock(store, clock),
      ingestTokens: tokens.ingestTokens,
      readTokens: tokens.readTokens,
      read: { alerts: { book, config } },
      log: (message) => display.line(`  collector: ${message}`),
    });
    const address = await listenWithFallback(collector, portOption ?? 7070, portOption === undefined);
    cleanups.push(() => collector.close());
    const baseUrl = `http://127.0.0.1:${address.port}`;
    display.line(`  ergometer serve: listening on ${baseUrl} (store: duckdb ${path.join(dir, 'ergometer.duckdb')})`);

    const fired: Alert[] = [];
    const sink: AlertSink = {
      name: 'demo',
      send: async (alerts) => {
        for (const alert of alerts) {
          fired.push(alert);
          display.line(`  ⚠ ALERT [${alert.kind}] ${alert.summary}`);
        }
      },
    };
    const detectors = new DetectorScheduler({
      store,
      config,
      book,
      sinks: [sink],
      intervalMs: 3_600_000, // runs after each phase (runOnce), not on a timer
      now: () => clock.now(),
      log: (message) => display.line(`  detectors: ${message}`),
    });

    // The load generator exists before the fleet: it also warms new processes up.
    let load: LoadGenerator | undefined;
    const fleet = new Fleet({
      dbFile,
      collector: baseUrl,
      ingestToken: tokens.ingestTokens[0] as string,
      service: DEMO_SERVICE,
      onStderr: (host, text) => {
        for (const l of text.trimEnd().split('\n')) display.line(`  ${host}: ${l}`);
      },
      warmUp: (port) => (load as LoadGenerator).warmUp(port, WARM_UP_REQUESTS),
    });
    cleanups.push(() => fleet.stopAll());
    load = new LoadGenerator(() => fleet.serving, 16);
    const traffic = load;
    cleanups.push(async () => {
      await traffic.pause();
      traffic.close();
    });

    const need = quick ? 360 : 1_500;
    // Real seconds from a rollout to its test's looks on the story clock (rolloutLook: the window / 8, / 4,
    // / 2, and the final look at the full window), each with two more for the story minute it ends in.
    const lookSeconds = [8, 4, 2, 1].map((d) => config.rolloutWindowMs / d / STORY_SPEED / 1000 + 2);
    const finalLookSeconds = lookSeconds[lookSeconds.length - 1] as number;
    const c = DEMO_COMMITS;
    const everyRoute = (commit: string, requests: number) => ROUTES.map((route) => ({ commit, route, requests }));
    const phases: Phase[] = [
      {
        title: `v1 (${c.v1}): the baseline on ${HOSTS.length} hosts`,
        deploy: HOSTS.map((h) => [h, 'v1']),
        needs: everyRoute(c.v1, need),
        minSeconds: quick ? 2 : 20,
      },
      {
        title: `v2 (${c.v2}): canary on web-2; its rankFeedItems now also drops near-duplicate posts (dropNearDuplicates)`,
        // Both hosts restart (web-1 on the same commit) so that both sides of the canary are processes
        // of the same age: a younger process costs more or less per request for a while.
        deploy: [
          ['web-1', 'v1'],
          ['web-2', 'v2'],
        ],
        needs: everyRoute(c.v2, need),
        minSeconds: quick ? 2 : 30,
        // Judged until an alert or the rollout test's final look (rolloutWindowMs of story time, both commits
        // serving), which may spend 90% of alpha where each interim look spends 2% (docs/detectors.md,
        // "Repeated looks"). A phase that ended after an interim look left the alert to that look's power:
        // on a loaded machine it missed (+51%, p = 1.4e-5), and by the next run v3 had already resolved
        // the regression, so it was never announced.
        canaryOf: c.v2,
      },
      {
        title: `v3 (${c.v3}): fixes the dedupe and turns on flag ${DEMO_FLAG.key} for 20% of users; first on web-1, beside v2`,
        deploy: [
          ['web-1', 'v3'],
          ['web-2', 'v2'],
        ],
        needs: everyRoute(c.v3, need),
        minSeconds: quick ? 2 : 30,
      },
      {
        title: `v3 (${c.v3}): everywhere`,
        deploy: [['web-2', 'v3']],
        // The flag's "on" side is a fifth of search: it sets the pace, with half again as many as the other
        // needs. The flag detector tests a commit's whole (story) hours and wants 300 samples a side
        // (minSamples): its alert came at 302–411 "on" samples in 7 runs, and two runs of a busy session
        // ended without it. More v3 traffic gives its later looks more room.
        needs: [{ commit: c.v3, route: FLAGGED_ENDPOINT, requests: Math.ceil((1.5 * need) / 0.2) }],
        minSeconds: quick ? 2 : 30,
      },
      {
        title: `v4 (${c.v4}): a quiet release (a new greeting), canary on web-2: nothing should fire`,
        deploy: [
          ['web-1', 'v3'],
          ['web-2', 'v4'],
        ],
        needs: everyRoute(c.v4, need),
        minSeconds: quick ? 2 : 30,
      },
    ];
    if (story === 'quiet') {
      phases.splice(
        0,
        phases.length,
        {
          title: `v3 (${c.v3}) on ${HOSTS.length} hosts`,
          deploy: HOSTS.map((h) => [h, 'v3']),
          needs: everyRoute(c.v3, need),
          minSeconds: quick ? 2 : 20,
        },
        phases[4] as Phase,
      );
    } else if (!quick) {
      phases.push({
        title: `v4 (${c.v4}): everywhere`,
        deploy: [['web-1', 'v4']],
        needs: everyRoute(c.v4, 3 * need),
        minSeconds: 20,
      });
    }

    // Traffic never stops: hosts are replaced under load, as a rolling deploy does, and the
    // detectors run after each phase while the next one starts, on every sample the phase's requests
    // left: each serving process writes what it recorded and the collector acknowledges it first (a
    // fixed wait for the agents' 500 ms flush timer was not enough on a busy machine: a detector run
    // that saw only part of v2's canary missed its alert). Processes replaced since wrote theirs when
    // they stopped. One detector run after another: runOnce() hands back a run in progress, which would
    // not have seen the phase that just ended.
    let detections: Promise<void> = Promise.resolve();
    /** Runs the detectors once every serving process has flushed; `afterPhase` names a phase that ended. */
    const detectSoon = (afterPhase?: string): Promise<void> => {
      const flushed = fleet.flushAll();
      detections = detections.then(async () => {
        const late = await flushed;
        if (late.length > 0)
          display.line(
            `  (${late.join(', ')} did not confirm its samples in time: the detectors run without its last ones)`,
          );
        const fresh = await detectors.runOnce();
        if (detectors.lastError) throw detectors.lastError;
        if (fresh.length === 0 && afterPhase !== undefined)
          display.line(`  (detectors after ${afterPhase}: no new alert)`);
      });
      return detections;
    };
    traffic.start();
    for (const [index, phase] of phases.entries()) {
      if (interrupted) throw interruption();
      display.line('');
      display.line(`▶ ${phase.title}`);
      const phaseStartMs = Date.now();
      const requestsBefore = traffic.stats.requests;
      display.setStatus(
        `  starting ${phase.deploy.map(([h, v]) => `${h} ${v}`).join(', ')} (warm-up: ${WARM_UP_REQUESTS} unsampled requests each)…`,
      );
      await Promise.all(phase.deploy.map(([host, version]) => fleet.deploy(host, version, DEMO_COMMITS[version])));
      const servingSinceMs = Date.now();
      display.line(`  hosts: ${describeFleet(fleet)}`);
      const looksDue = phase.canaryOf === undefined ? [] : lookSeconds.slice(0, -1);
      let looking: Promise<void> | undefined;
      for (;;) {
        await sleep(250);
        if (interrupted) throw interruption();
        const seconds = (Date.now() - phaseStartMs) / 1000;
        const done = phase.needs.every(
          (n) => (traffic.stats.byCommitEndpoint.get(`${n.commit} ${n.route}`) ?? 0) >= n.requests,
        );
        const sent = traffic.stats.requests - requestsBefore;
        display.setStatus(
          `  [${index + 1}/${phases.length}] ${seconds.toFixed(1)} s  ${sent.toLocaleString('en-US')} requests  ${Math.round(sent / Math.max(seconds, 0.1))}/s  errors ${traffic.stats.errors}  total ${traffic.stats.requests.toLocaleString('en-US')}`,
        );
        const servingSeconds = (Date.now() - servingSinceMs) / 1000;
        if (looking === undefined && looksDue.length > 0 && servingSeconds >= (looksDue[0] as number)) {
          while (looksDue.length > 0 && servingSeconds >= (looksDue[0] as number)) looksDue.shift();
          // A failed run fails the demo where `detections` is awaited, after the last phase.
          looking = detectSoon()
            .catch(() => undefined)
            .finally(() => {
              looking = undefined;
            });
        }
        const judged =
          phase.canaryOf === undefined ||
          servingSeconds >= finalLookSeconds ||
          fired.some((a) => a.kind === 'rollout' && a.candidate.commit === phase.canaryOf);
        if (done && judged && servingSeconds >= phase.minSeconds) break;
        if (servingSeconds > phase.minSeconds + (quick ? 45 : 240)) {
          display.line(`  (phase cut at ${seconds.toFixed(0)} s: this machine is slower than the demo expects)`);
          break;
        }
      }
      display.clearStatus();
      const sent = traffic.stats.requests - requestsBefore;
      display.line(
        `  ${sent.toLocaleString('en-US')} requests in ${((Date.now() - phaseStartMs) / 1000).toFixed(1)} s (${describeFleet(fleet)})`,
      );
      detectSoon(phase.title.split(':')[0] as string);
    }
    await traffic.pause();
    detectSoon('the last requests');
    await detections;

    await fleet.stopAll();
    const elapsedS = (Date.now() - startedMs) / 1000;
    const records = book.list({ service: DEMO_SERVICE });
    display.line('');
    display.line(
      `Summary (${elapsedS.toFixed(0)} s, ${traffic.stats.requests.toLocaleString('en-US')} requests measured):`,
    );
    display.line('');
    display.line(summaryTable(records));
    const verdict = checkDemoAlerts(records, {
      requireRootCause: rootCauseRequired(),
      story,
      announced: new Set(fired.map((a) => a.id)),
    });
    display.line('');
    if (verdict.ok && story === 'quiet') {
      display.line('As scripted: the quiet release v4 raised nothing.');
    } else if (verdict.ok) {
      display.line(
        `As scripted: v2 made ${REGRESSED_ENDPOINT} dearer (root cause ${rootCauseOf(records) ?? 'none found'}), v3 fixed it, ` +
          `${DEMO_FLAG.key}=${DEMO_FLAG.variant} made ${FLAGGED_ENDPOINT} dearer, and the quiet release v4 raised nothing.`,
      );
    } else {
      display.line('Not as scripted:');
      for (const p of verdict.problems) display.line(`  - ${p}`);
      if (story === 'full' && !records.some((r) => isScriptedRollout(r.alert))) {
        // Which condition the rollout test did not meet, look by look: a missed alert explains itself.
        display.line(`  The rollout test of ${DEMO_COMMITS.v2} on ${REGRESSED_ENDPOINT}, look by look:`);
        const looks = await explainRollout(
          store,
          DEMO_SERVICE,
          DEMO_COMMITS.v2,
          REGRESSED_ENDPOINT,
          config,
          clock.now(),
        )
          .then(explanationLines)
          .catch((error: Error) => [`(could not be read back: ${error.message})`]);
        for (const line of looks) display.line(`    ${line}`);
      }
    }
    display.line('');
    display.line(`Dashboard: ${baseUrl}/   read token: ${tokens.readTokens[0]}`);
    display.line(
      `API:       curl -H 'authorization: Bearer ${tokens.readTokens[0]}' '${baseUrl}/v1/alerts?service=${DEMO_SERVICE}'`,
    );
    if (exitWhenDone) return verdict.ok ? 0 : 1;
    display.line('Serving until Ctrl-C.');
    await new Promise<void>((resolve) => {
      const wait = setInterval(() => {
        if (interrupted) {
          clearInterval(wait);
          resolve();
        }
      }, 200);
    });
    display.line('Ctrl-C: stopping.');
    return 0;
  } catch (error) {
    display.clearStatus();
    if ((error as { code?: string }).code === 'ERGOMETER_DEMO_INTERRUPTED') {
      display.line('Interrupted.');
      return 130;
    }
    throw error;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    await cleanUp();
  }
}

function interruption(): Error {
  return Object.assign(new Error('interrupted'), { code: 'ERGOMETER_DEMO_INTERRUPTED' });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describeFleet(fleet: Fleet): string {
  return fleet.serving.map((h) => `${h.host} ${h.version}`).join(' · ');
}

async function listenWithFallback(
  collector: ReturnType<typeof createCollector>,
  port: number,
  fallBack: boolean,
): Promise<{ port: number }> {
  try {
    return await collector.listen(port, '127.0.0.1');
  } catch (error) {
    if (!fallBack) {
      throw new ErgometerError(
        'ERGOMETER_LISTEN_FAILED',
        1,
        `could not listen on 127.0.0.1:${port}: ${(error as Error).message}; choose another --port`,
      );
    }
    return collector.listen(0, '127.0.0.1');
  }
}

/** The feed alert's root cause as it reads: its first functions, up to and including the regressed one. */
function rootCauseOf(records: readonly AlertRecord[]): string | undefined {
  const named = records
    .find((r) => r.alert.kind === 'rollout' && r.alert.endpoint === REGRESSED_ENDPOINT)
    ?.alert.rootCause.map((c) => c.function);
  if (named === undefined || named.length === 0) return undefined;
  const upTo = named.indexOf(REGRESSED_FUNCTION);
  return named.slice(0, upTo >= 0 ? upTo + 1 : 1).join(', then ');
}

function formatP(p: number): string {
  if (p === 0) return '<1e-300';
  return p < 0.001 ? p.toExponential(0) : p.toFixed(3);
}

function commitLabel(commit: string): string {
  const version = LABEL[commit];
  return version ? `${commit} (${version})` : commit;
}

/** The summary: one row per alert the run raised, open or resolved. */
export function summaryTable(records: readonly AlertRecord[]): string {
  if (records.length === 0) return '  (no alerts)';
  const rows = [...records]
    .sort((a, b) => a.firstSeen - b.firstSeen)
    .map(({ alert: a, status }) => [
      a.endpoint,
      a.kind,
      `${a.changePct >= 0 ? '+' : ''}${a.changePct.toFixed(1)}%`,
      `[${a.ci[0].toFixed(1)}, ${a.ci[1].toFixed(1)}]`,
      formatP(a.pValue),
      a.kind === 'flag' && a.flag
        ? `${a.flag.key}=${a.flag.variant} vs ${a.flag.control}`
        : `${commitLabel(a.candidate.commit)} vs ${commitLabel(a.baseline.commit)}`,
      a.rootCause.length > 0
        ? a.rootCause
            .slice(0, 3)
            .map((r) => `${r.function} (${r.deltaPct >= 0 ? '+' : ''}${r.deltaPct.toFixed(1)} pts)`)
            .join(', ')
        : '—',
      status === 'resolved' && a.resolvedBy ? `resolved by ${commitLabel(a.resolvedBy)}` : status,
    ]);
  // One run of the detectors, one confidence.
  const ciLabel = `${formatLevel((records[0] as AlertRecord).alert.confidence)} CI`;
  return textTable(['endpoint', 'kind', 'change', ciLabel, 'p', 'commit / flag', 'root cause', 'status'], rows)
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');
}
