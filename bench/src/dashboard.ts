/**
 * Dashboard benchmark (issue 7): how long each view of the dashboard waits for its data over the
 * 10 M-sample DuckDB store of the latency benchmarks (ingest.ts, filled once per run).
 *
 * Each view is replayed as the page loads it (packages/ergometer/dashboard/src/views/*.ts): the same
 * read API requests with the same parameters, in the same order, those the page sends together sent
 * in parallel, later ones chosen from earlier answers as the page chooses them. A view's time runs
 * from its first request to the last answer: what the user waits for before the view can draw
 * (drawing itself, in the browser, is not counted). The collector runs in its own process, as
 * `ergometer serve` does, and the client speaks HTTP with the read token.
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { filledDuckDbStore, fmt, procCpuSeconds, READ_TOKEN, startCollector } from './ingest';
import { SERVICE } from './ingest/workload';
import type { BenchTable } from './report';

const QUICK = process.env.BENCH_QUICK === '1';
/** Loads of each view after its first (cold) one. */
const ROUNDS = Number(process.env.BENCH_DASHBOARD_ROUNDS ?? (QUICK ? 3 : 20));
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

type Params = Record<string, string | number | undefined>;

/** One timed request of a view: its route (and what it is for), its time in ms. */
interface Timed {
  label: string;
  ms: number;
}

/** GETs a read route and records its time under `label`. */
type Get = <T>(label: string, route: string, params?: Params) => Promise<T>;

interface CommitInfo {
  commit: string;
  firstSeen: number;
  lastSeen: number;
}
interface EndpointStats {
  endpoint: string;
  share: number;
}
interface Breakdown {
  flags: Array<{ key: string; variant: string; samples: number }>;
}

/** What every view knows before it loads: service, metric and range, as the page's router works them out. */
interface ViewContext {
  service: string;
  metric: string;
  from: number;
  to: number;
  /** The endpoint the Endpoint view shows (the heaviest: the first row of the Overview). */
  endpoint: string;
}

/** The page's `rollouts()` (views/common.ts): commits of the service, deploys in range. */
async function rollouts(get: Get, ctx: ViewContext): Promise<CommitInfo[]> {
  const [commits] = await Promise.all([
    get<CommitInfo[]>('/v1/commits', '/v1/commits', { service: ctx.service }),
    get<unknown[]>('/v1/deploys', '/v1/deploys', { service: ctx.service, from: ctx.from, to: ctx.to }),
  ]);
  return [...commits].sort((a, b) => a.firstSeen - b.firstSeen);
}

/** Each view's loading, request for request as the page does it (main.ts's render() asks for the services first). */
const VIEWS: ReadonlyArray<{ name: string; load: (get: Get, ctx: ViewContext) => Promise<void> }> = [
  {
    name: 'Overview',
    // views/overview.ts
    load: async (get, ctx) => {
      await get('/v1/services', '/v1/services');
      const { service, metric, from, to } = ctx;
      // The page's sparkline bucket (overview.ts): about 48 buckets per range, whole hours from an hour up.
      const sparkBucketMs = sparklineBucketMs(from, to);
      await Promise.all([
        get('/v1/endpoints', '/v1/endpoints', { service, metric, from, to }),
        get('/v1/timeseries (sparklines)', '/v1/timeseries', {
          service,
          metric,
          groupBy: 'endpoint',
          bucketMs: sparkBucketMs,
          quantiles: 'none',
          from,
          to,
        }),
        rollouts(get, ctx),
        get('/v1/efficiency', '/v1/efficiency', { service, from: Math.min(from, to - 14 * DAY_MS), to }),
      ]);
    },
  },
  {
    name: 'Endpoint',
    // views/endpoint.ts
    load: async (get, ctx) => {
      await get('/v1/services', '/v1/services');
      const { service, metric, from, to, endpoint } = ctx;
      const [, commits] = await Promise.all([
        get('/v1/timeseries', '/v1/timeseries', {
          service,
          endpoint,
          metric,
          groupBy: 'none',
          quantiles: 'cost',
          from,
          to,
        }),
        rollouts(get, ctx),
      ]);
      const seen = [...new Set(commits.filter((c) => c.lastSeen >= from && c.firstSeen < to).map((c) => c.commit))];
      const commitA = seen[seen.length - 2] ?? seen[0];
      const commitB = seen[seen.length - 1];
      await Promise.all([
        commitA
          ? get('/v1/distribution', '/v1/distribution', { service, endpoint, commit: commitA, metric, from, to })
          : null,
        commitB
          ? get('/v1/distribution', '/v1/distribution', { service, endpoint, commit: commitB, metric, from, to })
          : null,
        get('/v1/breakdown', '/v1/breakdown', { service, endpoint, commit: commitB, metric, from, to }),
        // The rollout test of the second commit, look by look.
        commitB ? get('/v1/explain', '/v1/explain', { service, endpoint, commit: commitB }) : null,
      ]);
    },
  },
  {
    name: 'Alerts',
    // views/alerts.ts
    load: async (get, ctx) => {
      await get('/v1/services', '/v1/services');
      await get('/v1/alerts', '/v1/alerts', { service: ctx.service, status: 'open' });
    },
  },
  {
    name: 'Compare: two commits',
    // views/compare.ts, mode=commits
    load: async (get, ctx) => {
      await get('/v1/services', '/v1/services');
      const { service } = ctx;
      const commits = (await get<CommitInfo[]>('/v1/commits', '/v1/commits', { service })).sort(
        (a, b) => a.firstSeen - b.firstSeen,
      );
      const base = commits[commits.length - 2]?.commit;
      const head = commits[commits.length - 1]?.commit;
      await Promise.all([
        get('/v1/compare', '/v1/compare', { service, base, head }),
        // profileDiff(): the profiles of each side first (the fill has none, so no diff is asked for).
        get('/v1/profiles', '/v1/profiles', { service, commit: base }),
        get('/v1/profiles', '/v1/profiles', { service, commit: head }),
      ]);
    },
  },
  {
    name: 'Compare: two flag variants',
    // views/compare.ts, mode=flag
    load: async (get, ctx) => {
      await get('/v1/services', '/v1/services');
      const { service } = ctx;
      const commits = (await get<CommitInfo[]>('/v1/commits', '/v1/commits', { service })).sort(
        (a, b) => a.firstSeen - b.firstSeen,
      );
      const commit = commits[commits.length - 1]?.commit;
      const { flags } = await get<Breakdown>('/v1/breakdown (flags)', '/v1/breakdown', { service, commit });
      const flag = flags[0]?.key;
      const variants = flags.filter((f) => f.key === flag).sort((a, b) => b.samples - a.samples);
      await Promise.all([
        get('/v1/compare', '/v1/compare', {
          service,
          commit,
          flag,
          baseVariant: variants[0]?.variant,
          headVariant: variants[1]?.variant,
        }),
        get('/v1/profiles', '/v1/profiles', { service, commit }),
      ]);
    },
  },
];

/** The Overview's sparkline bucket width (views/overview.ts): kept in step with the page. */
function sparklineBucketMs(from: number, to: number): number {
  const minutes = Math.max(1, Math.ceil((to - from) / 48 / 60_000));
  return minutes >= 60 ? Math.ceil(minutes / 60) * HOUR_MS : minutes * 60_000;
}

function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

/** Every dashboard view's wait for its data over the filled store: first load, then p50/p95/max of ROUNDS loads. */
export async function benchDashboard(): Promise<BenchTable> {
  const filled = await filledDuckDbStore();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-bench-dashboard-'));
  try {
    const file = path.join(dir, 'dashboard.duckdb');
    copyFileSync(filled.file, file);
    const collector = await startCollector({ backend: 'duckdb', db: file, alerts: true });
    try {
      const base = `http://127.0.0.1:${collector.port}`;
      let timings: Timed[] = [];
      const get: Get = async <T>(label: string, route: string, params: Params = {}): Promise<T> => {
        const query = new URLSearchParams();
        for (const [key, value] of Object.entries(params))
          if (value !== undefined && value !== '') query.set(key, String(value));
        const t0 = performance.now();
        const response = await fetch(`${base}${route}${query.size > 0 ? `?${query}` : ''}`, {
          headers: { authorization: `Bearer ${READ_TOKEN}`, accept: 'application/json' },
        });
        const body = await response.text();
        timings.push({ label, ms: performance.now() - t0 });
        if (response.status !== 200) throw new Error(`GET ${route}?${query}: ${response.status} ${body.slice(0, 300)}`);
        return JSON.parse(body) as T;
      };

      // The page's default range, "last 24 hours", as it would be read right after the fill (which
      // ends an hour before it starts); then "last 7 days" over the same day of data.
      const services = await fetch(`${base}/v1/services`, { headers: { authorization: `Bearer ${READ_TOKEN}` } });
      const info = ((await services.json()) as Array<{ service: string; lastSeen: number; metrics: string[] }>).find(
        (s) => s.service === SERVICE,
      );
      if (!info) throw new Error(`the filled store has no service ${SERVICE}`);
      const end = Math.ceil((info.lastSeen + HOUR_MS + 1) / 60_000) * 60_000;
      const metric = info.metrics[0] ?? 'instructions';
      const heaviest = await fetch(
        `${base}/v1/endpoints?${new URLSearchParams({ service: SERVICE, metric, from: String(end - DAY_MS), to: String(end) })}`,
        { headers: { authorization: `Bearer ${READ_TOKEN}` } },
      );
      const endpoint = ((await heaviest.json()) as EndpointStats[]).sort((a, b) => b.share - a.share)[0]?.endpoint;
      if (endpoint === undefined) throw new Error('the filled store has no endpoints');
      // Opening the collector and the two lookups above warmed nothing the views read except /v1/endpoints' own rows.
      const ranges = [
        { label: '24 h', from: end - DAY_MS, to: end },
        { label: '7 d', from: end - 7 * DAY_MS, to: end },
      ];
      const runs: Array<{ view: string; range: string; load: (typeof VIEWS)[number]['load']; ctx: ViewContext }> = [];
      for (const view of VIEWS) {
        const rangesOfView =
          view.name === 'Overview' || view.name === 'Endpoint' ? ranges : [ranges[0] as (typeof ranges)[0]];
        for (const range of rangesOfView) {
          runs.push({
            view: view.name,
            range: range.label,
            load: view.load,
            ctx: { service: SERVICE, metric, from: range.from, to: range.to, endpoint },
          });
        }
      }
      const results = runs.map(() => ({
        first: 0,
        firstRequests: [] as Timed[],
        loads: [] as number[],
        cpuMs: [] as number[],
        requests: [] as Timed[],
      }));
      // The collector's CPU time per load (all its threads, DuckDB's included): unlike the wait, it
      // does not grow when other jobs share the cores.
      const pid = collector.child.pid as number;
      const loadAverage = os.loadavg()[0] as number;
      // Round-robin, as someone clicking through the views: round 0 is each view's first (cold) load.
      for (let round = 0; round <= ROUNDS; round++) {
        for (const [i, run] of runs.entries()) {
          const result = results[i] as (typeof results)[number];
          timings = [];
          const cpu0 = procCpuSeconds(pid);
          const t0 = performance.now();
          await run.load(get, run.ctx);
          const ms = performance.now() - t0;
          if (round === 0) {
            result.first = ms;
            result.firstRequests = timings;
          } else {
            result.loads.push(ms);
            result.cpuMs.push((procCpuSeconds(pid) - cpu0) * 1000);
            result.requests.push(...timings);
          }
        }
        if (round === 0) process.stderr.write('dashboard: first loads done\n');
      }

      const rows: (string | number)[][] = [];
      let slowestRequest = { label: '', view: '', ms: 0 };
      for (const [i, run] of runs.entries()) {
        const result = results[i] as (typeof results)[number];
        const loads = [...result.loads].sort((a, b) => a - b);
        // The slowest route of the view by its p95, and the single slowest request seen (first load included).
        const byLabel = new Map<string, number[]>();
        for (const t of result.requests) byLabel.set(t.label, [...(byLabel.get(t.label) ?? []), t.ms]);
        let slowest = { label: '', p95: 0 };
        for (const [label, times] of byLabel) {
          const p95 = percentile(
            [...times].sort((a, b) => a - b),
            0.95,
          );
          if (p95 > slowest.p95) slowest = { label, p95 };
        }
        for (const t of [...result.firstRequests, ...result.requests]) {
          if (t.ms > slowestRequest.ms)
            slowestRequest = { label: t.label, view: `${run.view} (${run.range})`, ms: t.ms };
        }
        rows.push([
          run.view,
          run.range,
          new Set(result.requests.map((t) => t.label)).size === 0 ? 0 : result.requests.length / ROUNDS,
          fmt(result.first),
          fmt(percentile(loads, 0.5)),
          fmt(percentile(loads, 0.95)),
          fmt(loads[loads.length - 1] as number),
          fmt(
            percentile(
              [...result.cpuMs].sort((a, b) => a - b),
              0.5,
            ),
          ),
          `${slowest.label} (${fmt(slowest.p95)})`,
        ]);
      }
      return {
        title: 'Dashboard views: time to data over a filled store',
        description:
          `The DuckDB store of the latency benchmark above (${fmt(filled.samples)} samples of the ingest workload: one day, 30 endpoints, 4 commits, ` +
          'flags on 60 % of samples), served by the collector in its own process. Each view is loaded as the page loads it ' +
          '(bench/src/dashboard.ts replays views/*.ts): the same read API requests over HTTP with the read token, those the page sends together ' +
          "in parallel, later ones chosen from earlier answers. A view's time runs from its first request to its last answer (drawing in the browser " +
          `is not counted). Views are loaded round-robin: the first load of each (cold caches), then ${ROUNDS} more for p50/p95/max. ` +
          'Ranges as the range picker gives them ("last 24 hours" is the default; "last 7 days" covers the same day of data).',
        columns: [
          'view',
          'range',
          'requests',
          'first load ms',
          'p50 ms',
          'p95 ms',
          'max ms',
          'collector CPU ms (p50)',
          'slowest request (p95 ms)',
        ],
        rows,
        notes: [
          `Slowest single request of the run: ${slowestRequest.label} in ${slowestRequest.view}, ${fmt(slowestRequest.ms)} ms. ` +
            `Load average (1 min) when the loads began: ${loadAverage.toFixed(1)} on ${os.cpus().length} cores; ` +
            'the waits grow with it, the collector CPU column much less (/proc, 10 ms ticks).',
        ],
      };
    } finally {
      await collector.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
