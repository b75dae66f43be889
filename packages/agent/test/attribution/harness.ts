/**
 * Drives the attribution-accuracy fixture (fixtures/three-endpoints.js):
 * solo phases (one request at a time, one endpoint at a time) alternating with
 * load phases (64 concurrent connections, all endpoints mixed), then joins the
 * agent's samples with the fixture's own inline measurements.
 *
 * Shared by test/attribution/accuracy.test.ts and bench/src/attribution.ts.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

export const ENDPOINTS = [
  { name: 'GET /light', path: '/light', statsKey: '/light' },
  { name: 'GET /medium', path: '/medium', statsKey: '/medium' },
  { name: 'GET /heavy/:id', path: '/heavy/7', statsKey: '/heavy/:id' },
] as const;

export type PhaseKind = 'solo' | 'load';

/** Per endpoint and phase kind: means per request, in the counter's units. */
export interface EndpointAccuracy {
  endpoint: string;
  samples: Record<PhaseKind, number>;
  /** Mean cost the agent charged to the request. */
  attributed: Record<PhaseKind, number>;
  /** Mean known work done by the request, timed inline by the app. */
  known: Record<PhaseKind, number>;
  /** Mean of counter(finish) − counter(start): what a naive middleware would report. */
  naive: Record<PhaseKind, number>;
  /**
   * Medians of the attributed and of the naive figure. A single garbage-collection pause that lands
   * between the naive middleware's start and the agent's moves a mean over ~150 requests by several
   * percent; it cannot move a median.
   */
  median: { attributed: Record<PhaseKind, number>; naive: Record<PhaseKind, number> };
}

export interface AccuracyResult {
  metric: string;
  endpoints: EndpointAccuracy[];
  /** Sum of attributed cost over load phases / thread CPU used during them. */
  loadAttributedShareOfThreadCpu: number;
}

export interface AccuracyRunOptions {
  rounds: number;
  soloRequestsPerEndpoint: number;
  loadRequests: number;
  concurrency: number;
  warmupRequests: number;
}

const FIXTURE = path.join(__dirname, '..', '..', '..', 'test', 'attribution', 'fixtures', 'three-endpoints.js');

interface FixtureStats {
  stats: Record<string, { requests: number; known: number; naive: number; naiveEach: number[] }>;
  threadCpu: number;
  metric: string;
}

interface Sample {
  ts: number;
  endpoint: string;
  cost: number;
}

function get(port: number, requestPath: string, agent: http.Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: requestPath, agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () =>
          res.statusCode === 200 ? resolve(body) : reject(new Error(`${requestPath}: ${res.statusCode}`)),
        );
      })
      .on('error', reject);
  });
}

/** Sends `total` requests over `concurrency` keep-alive connections, cycling through `paths`. */
async function drive(port: number, paths: readonly string[], total: number, concurrency: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  let next = 0;
  const worker = async () => {
    while (next < total) {
      const requestPath = paths[next++ % paths.length]!;
      await get(port, requestPath, agent);
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, worker));
  } finally {
    agent.destroy();
  }
}

async function readStats(port: number): Promise<FixtureStats> {
  const agent = new http.Agent();
  try {
    return JSON.parse(await get(port, '/__stats', agent)) as FixtureStats;
  } finally {
    agent.destroy();
  }
}

/** Runs the whole experiment in a fresh child process and returns per-endpoint means. */
export async function measureAttributionAccuracy(options: AccuracyRunOptions): Promise<AccuracyResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-attribution-'));
  const file = path.join(dir, 'samples.ndjson');
  const child: ChildProcess = fork(FIXTURE, {
    env: {
      ...process.env,
      ERGOMETER_SERVICE: 'attribution-test',
      ERGOMETER_COLLECTOR: `file:${file}`,
      ERGOMETER_SAMPLE_RATE: '1',
      ERGOMETER_FLUSH_INTERVAL_MS: '500',
      ERGOMETER_COMMIT: 'test',
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (message) => resolve((message as { port: number }).port));
      child.once('exit', (code) => reject(new Error(`fixture exited with ${code} before listening`)));
    });
    const allPaths = process.env.ATTR_LOAD_PATHS
      ? process.env.ATTR_LOAD_PATHS.split(',')
      : [ENDPOINTS[0].path, ENDPOINTS[1].path, ENDPOINTS[2].path, ENDPOINTS[2].path];
    await drive(port, allPaths, options.warmupRequests, 8);
    await readStats(port); // discard warm-up stats

    const phases: { kind: PhaseKind; from: number; to: number }[] = [];
    const inline: Record<PhaseKind, FixtureStats['stats'][]> = { solo: [], load: [] };
    let loadThreadCpu = 0;
    for (let round = 0; round < options.rounds; round++) {
      let from = Date.now();
      for (const endpoint of ENDPOINTS) await drive(port, [endpoint.path], options.soloRequestsPerEndpoint, 1);
      inline.solo.push((await readStats(port)).stats);
      phases.push({ kind: 'solo', from, to: Date.now() });

      from = Date.now();
      const cpuBefore = (await readStats(port)).threadCpu;
      await drive(port, allPaths, options.loadRequests, options.concurrency);
      const after = await readStats(port);
      loadThreadCpu += after.threadCpu - cpuBefore;
      inline.load.push(after.stats);
      phases.push({ kind: 'load', from, to: Date.now() });
    }
    const metric = (await readStats(port)).metric;
    child.send('stop');
    await new Promise((resolve) => child.once('exit', resolve));

    const samples: Sample[] = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .flatMap((line) => (JSON.parse(line) as { samples: Sample[] }).samples);
    const phaseOf = (ts: number) => phases.find((p) => ts >= p.from && ts <= p.to)?.kind;

    let loadAttributed = 0;
    const endpoints = ENDPOINTS.map((endpoint): EndpointAccuracy => {
      const costs: Record<PhaseKind, number[]> = { solo: [], load: [] };
      for (const sample of samples) {
        if (sample.endpoint !== endpoint.name) continue;
        const kind = phaseOf(sample.ts);
        if (kind !== undefined) costs[kind].push(sample.cost);
      }
      loadAttributed += costs.load.reduce((a, b) => a + b, 0);
      const inlineMean = (kind: PhaseKind, field: 'known' | 'naive') => {
        let sum = 0;
        let requests = 0;
        for (const stats of inline[kind]) {
          const s = stats[endpoint.statsKey];
          if (s === undefined) continue;
          sum += s[field];
          requests += s.requests;
        }
        return requests === 0 ? Number.NaN : sum / requests;
      };
      const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
      const naiveEach = (kind: PhaseKind) => inline[kind].flatMap((stats) => stats[endpoint.statsKey]?.naiveEach ?? []);
      return {
        endpoint: endpoint.name,
        samples: { solo: costs.solo.length, load: costs.load.length },
        attributed: { solo: mean(costs.solo), load: mean(costs.load) },
        known: { solo: inlineMean('solo', 'known'), load: inlineMean('load', 'known') },
        naive: { solo: inlineMean('solo', 'naive'), load: inlineMean('load', 'naive') },
        median: {
          attributed: { solo: median(costs.solo), load: median(costs.load) },
          naive: { solo: median(naiveEach('solo')), load: median(naiveEach('load')) },
        },
      };
    });
    return { metric, endpoints, loadAttributedShareOfThreadCpu: loadAttributed / loadThreadCpu };
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Attributed cost under load, corrected for how fast this machine ran the same
 * known work in each phase (see accuracy.test.ts for why): attributed.load ×
 * known.solo / known.load.
 */
export function speedCorrectedLoadCost(e: EndpointAccuracy): number {
  return (e.attributed.load * e.known.solo) / e.known.load;
}
