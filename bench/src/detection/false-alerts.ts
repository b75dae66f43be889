/**
 * False alerts of the rollout detector when nothing changed (A/A rollouts), two ways:
 *  1. many simulated rollouts through the detector's statistics (per-endpoint, per-host-class,
 *     stratified, Benjamini–Hochberg over the rollout's endpoints, the default α and threshold),
 *     with heavy-tailed costs, unequal traffic and a shift of traffic between host classes;
 *  2. fewer rollouts through the real parts: wire batches POSTed to the collector over HTTP into a
 *     DuckDB file, then `runDetectors` over the store, exactly as `ergometer serve` does.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  benjaminiHochberg,
  createCollector,
  DEFAULT_DETECTOR_CONFIG,
  openDuckDbStore,
  resolveDetectorConfig,
  runDetectors,
  type Stratum,
  seededRandom,
  stratifiedRatio,
} from 'ergometer';
import type { BenchTable } from '../report';

type Shape = 'log-normal σ=1' | '5% slow path ×20';

function costSampler(random: () => number, shape: Shape): () => number {
  const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  if (shape === 'log-normal σ=1') return () => Math.exp(normal());
  return () => (random() < 0.05 ? 20 * Math.exp(0.3 * normal()) : Math.exp(0.5 * normal()));
}

/** Samples per arm of endpoint i of 20: Zipf-like, from 20 000·scale down to 1 000·scale. */
function trafficOf(i: number, scale: number): number {
  return Math.round((20_000 * scale) / (i + 1));
}

function statisticalRollouts(rollouts: number, shape: Shape, seed: number): number {
  const random = seededRandom(seed);
  const draw = costSampler(random, shape);
  const alpha = DEFAULT_DETECTOR_CONFIG.alpha;
  const threshold = DEFAULT_DETECTOR_CONFIG.minEffectPct;
  const minSamples = DEFAULT_DETECTOR_CONFIG.minSamples;
  let alerts = 0;
  for (let r = 0; r < rollouts; r++) {
    const pValues: number[] = [];
    const changes: number[] = [];
    for (let e = 0; e < 20; e++) {
      const n = trafficOf(e, 0.25);
      // Host class B costs 1.5×; its share moves from 30% to 70% at the rollout (a mix shift).
      const strata: Stratum[] = [];
      for (const [shareBefore, shareAfter, factor] of [
        [0.7, 0.3, 1],
        [0.3, 0.7, 1.5],
      ] as const) {
        const moments = (count: number) => {
          let sum = 0;
          let sum2 = 0;
          for (let i = 0; i < count; i++) {
            const x = factor * draw();
            sum += x;
            sum2 += x * x;
          }
          return { n: count, sum, sum2 };
        };
        const before = Math.round(n * shareBefore);
        const after = Math.round(n * shareAfter);
        // As compareGroups: a host class is compared only with minSamples on both sides.
        if (before < minSamples || after < minSamples) continue;
        strata.push({ baseline: moments(before), candidate: moments(after) });
      }
      const estimate = stratifiedRatio(strata);
      if (!estimate) continue;
      pValues.push(estimate.pValue);
      changes.push(estimate.changePct);
    }
    const adjusted = benjaminiHochberg(pValues);
    if (adjusted.some((p, i) => p < alpha && (changes[i] as number) >= threshold)) alerts++;
  }
  return alerts;
}

async function throughIngest(
  services: number,
  seed: number,
): Promise<{ alerts: number; tested: number; samples: number }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ergometer-bench-aa-'));
  const store = openDuckDbStore({ path: path.join(dir, 'aa.duckdb') });
  await store.init();
  const collector = createCollector({ store, ingestTokens: ['i'], readTokens: ['r'], log: () => undefined });
  const address: AddressInfo = await collector.listen(0, '127.0.0.1');
  const url = `http://127.0.0.1:${address.port}/v1/samples`;
  const random = seededRandom(seed);
  const draw = costSampler(random, 'log-normal σ=1');
  const now = Date.now();
  const hour = 3_600_000;
  let samples = 0;
  let batchNo = 0;
  try {
    for (let s = 0; s < services; s++) {
      // Commit a for 6 h, then commit b for 6 h (before/after, no change), traffic moving to class B.
      for (const [commit, from, shareB] of [
        ['a', now - 12 * hour, 0.3],
        ['b', now - 6 * hour, 0.7],
      ] as const) {
        for (let h = 0; h < 6; h++) {
          for (const hostClass of ['A x2', 'B x4']) {
            const share = hostClass === 'B x4' ? shareB : 1 - shareB;
            const batch = [];
            for (let e = 0; e < 5; e++) {
              const count = Math.round(((trafficOf(e, 0.06) * share) / 6) * 2);
              for (let i = 0; i < count; i++) {
                const cost = Math.round(1e6 * draw() * (hostClass === 'B x4' ? 1.5 : 1));
                batch.push({
                  ts: from + h * hour + Math.floor(random() * hour),
                  endpoint: `GET /e${e}`,
                  status: 200,
                  cost,
                  wallMs: cost / 1e6,
                  weight: 1,
                });
              }
            }
            samples += batch.length;
            const body = gzipSync(
              JSON.stringify({
                v: 1,
                batchId: `aa-${seed}-${batchNo++}`,
                service: `aa-${s}`,
                host: hostClass,
                region: 'sim',
                commit,
                metric: 'cpu_ns',
                hostClass,
                agent: { version: 'sim', runtime: 'sim', counter: 'sim', dropped: 0 },
                samples: batch,
                counts: [],
                users: [],
              }),
            );
            const response = await fetch(url, {
              method: 'POST',
              headers: { authorization: 'Bearer i', 'content-type': 'application/json', 'content-encoding': 'gzip' },
              body,
            });
            if (response.status !== 200)
              throw new Error(`ingest answered ${response.status}: ${await response.text()}`);
          }
        }
      }
    }
    const run = await runDetectors(store, resolveDetectorConfig(), { now });
    return { alerts: run.alerts.length, tested: run.tested, samples };
  } finally {
    await collector.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchFalseAlerts(): Promise<BenchTable> {
  const quick = process.env.BENCH_QUICK === '1';
  const rollouts = quick ? 200 : 2000;
  const rows: (string | number)[][] = [];
  for (const [i, shape] of (['log-normal σ=1', '5% slow path ×20'] as const).entries()) {
    const alerts = statisticalRollouts(rollouts, shape, 1000 + i);
    rows.push([
      `simulated statistics, ${shape}, 20 endpoints, mix shift`,
      rollouts,
      alerts,
      ((1000 * alerts) / rollouts).toFixed(2),
    ]);
  }
  const services = quick ? 5 : 40;
  const ingest = await throughIngest(services, 7);
  rows.push([
    `HTTP ingest → DuckDB → runDetectors, 5 endpoints, mix shift (${ingest.samples.toLocaleString('en-US')} samples, ${ingest.tested} comparisons)`,
    services,
    ingest.alerts,
    ((1000 * ingest.alerts) / services).toFixed(1),
  ]);
  return {
    title: 'False alerts on A/A rollouts (nothing changed)',
    description:
      `Rollouts in which the commit changed nothing, while traffic moved from 30% to 70% on a 1.5× dearer host class. ` +
      `Detector defaults: α = ${DEFAULT_DETECTOR_CONFIG.alpha} (Benjamini–Hochberg over the rollout's endpoints), ` +
      `minimum effect ${DEFAULT_DETECTOR_CONFIG.minEffectPct}%, regressions only. Goal: ≤ 1 false alert per 1000 rollouts.`,
    columns: ['how', 'rollouts', 'false alerts', 'per 1000 rollouts'],
    rows,
    notes: [
      'Under the global null Benjamini–Hochberg bounds the chance of any alert in a rollout by α, and only ' +
        'regressions alert, so the expected rate is about α/2 = 0.5 per 1000. The ingest row has too few rollouts ' +
        'to measure a rate that small; it checks that the real path (validation, storage, aggregates, stratification) ' +
        'adds no false alerts of its own.',
    ],
  };
}
