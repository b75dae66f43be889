/**
 * Attribution accuracy as a benchmark table: the same experiment as
 * packages/agent/test/attribution/accuracy.test.ts (solo vs concurrency 64,
 * with the naive start-vs-end measure beside ours), with more requests.
 */
import path from 'node:path';
import type * as Harness from '../../packages/agent/dist/test/attribution/harness';
import { type BenchTable, renderTable } from './report';

// The harness lives with the test that asserts on it; the benchmark reuses the
// compiled copy rather than keeping a second one. (Source and output sit at
// different depths, hence the runtime path.)
const { measureAttributionAccuracy, speedCorrectedLoadCost } = require(
  path.join(__dirname, '..', '..', '..', 'packages', 'agent', 'dist', 'test', 'attribution', 'harness.js'),
) as typeof Harness;

const us = (ns: number) => (ns / 1000).toFixed(0);
const pct = (ratio: number) => `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(1)}%`;

export async function benchAttribution(): Promise<BenchTable> {
  const quick = process.env.BENCH_QUICK === '1';
  const result = await measureAttributionAccuracy({
    rounds: quick ? 1 : 4,
    soloRequestsPerEndpoint: quick ? 30 : 80,
    loadRequests: quick ? 300 : 800,
    concurrency: 64,
    warmupRequests: 600,
  });
  const light = result.endpoints[0]!;
  return {
    title: 'Attribution accuracy: solo vs concurrency 64',
    description:
      `Three endpoints with known CPU work spread over await, timers, setImmediate, stream and socket callbacks, ` +
      `measured one request at a time and then 64 at a time with all endpoints mixed, alternating rounds, ` +
      `with unrelated work running on the same thread. Metric: \`${result.metric}\`, µs per request. ` +
      '"Load (speed-corrected)" scales the load figure by how fast the machine ran the same known work in each ' +
      'phase (1.0 with instruction counters). "Naive" is a middleware reading the counter at request start and end.',
    columns: [
      'endpoint',
      'samples solo/load',
      'ours solo',
      'ours load',
      'ours load (speed-corrected)',
      'ours: load vs solo',
      'naive solo',
      'naive load',
      'naive: load vs solo',
    ],
    rows: result.endpoints.map((e) => {
      const corrected = speedCorrectedLoadCost(e);
      return [
        `\`${e.endpoint}\``,
        `${e.samples.solo}/${e.samples.load}`,
        us(e.attributed.solo),
        us(e.attributed.load),
        us(corrected),
        pct(corrected / e.attributed.solo),
        us(e.naive.solo),
        us(e.naive.load),
        pct(e.naive.load / e.naive.solo),
      ];
    }),
    notes: [
      `The synchronous endpoint is the one place where the naive measure is ground truth (nothing can interleave ` +
        `with it), so it shows how much the machine itself moved between phases: median ours / median naive for \`GET /light\` is ` +
        `${(light.median.attributed.solo / light.median.naive.solo).toFixed(3)} solo and ` +
        `${(light.median.attributed.load / light.median.naive.load).toFixed(3)} under load (medians, which one GC pause cannot move; ours starts a little later than the naive middleware). On real CPU time the same code costs a few ` +
        'percent more or less under load (caches, GC with 64 requests alive, a noisy VM), differently for different code; ' +
        'the attribution logic itself is checked exactly, to the unit, by packages/agent/test/attribution/exact.test.ts ' +
        'with a deterministic counter (the role hardware instruction counters play) under concurrency 64.',
      `Share of the thread's CPU during load phases charged to some request: ${(result.loadAttributedShareOfThreadCpu * 100).toFixed(1)}% ` +
        '(the rest is the event loop, the unrelated background work and work before the agent sees a request).',
    ],
  };
}

if (require.main === module) {
  benchAttribution().then(
    (table) => console.log(renderTable(table)),
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
