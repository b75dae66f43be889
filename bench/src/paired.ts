import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { LoadRequest, LoadResult } from './apps/load-generator';
import type { PairedCycle, PairedResult } from './apps/paired-server';
import { canPin, firstMessage, LOAD_CPU, median, SERVER_CPU, startChild } from './throughput';

/**
 * The agent's cost at sampleRate 1, paired in one process: the throughput app
 * runs with the agent's middleware every other 250 ms phase and without it in
 * between (apps/paired-server.ts), under the same autocannon load as the
 * throughput benchmark. Prints CPU µs per request in both phases and their
 * ratio (off/on: 1 = free; throughput at a saturated CPU follows it).
 *
 * Use it to compare two builds of the agent on a shared machine: separate
 * processes minutes apart (the throughput benchmark) spread by tens of percent
 * there, the ratio of the interleaved phases much less. It is not a
 * replacement for the throughput table: the "off" phases run in a process
 * where the agent ran a moment ago (its JIT state, its listeners on the
 * server), so the ratio understates the cost against a process without it.
 *
 *   node bench/dist/src/paired.js [runs=4] [seconds=8]
 */
/**
 * The cost of "on" from the cycles of a paired run: the mean over cycles of ln(CPU per request on / off),
 * with a 95% interval (normal, over cycles), as a ratio. Adjacent phases see the same machine, so the
 * host's drift, which moves separate runs by tens of percent here, cancels within each cycle.
 */
export function cycleCost(cycles: readonly PairedCycle[]): { ratio: number; low: number; high: number; n: number } {
  const logs = cycles.map((c) => Math.log(c.on.cpuMicros / c.on.requests / (c.off.cpuMicros / c.off.requests)));
  const n = logs.length;
  const mean = logs.reduce((a, b) => a + b, 0) / n;
  // One cycle says nothing about the spread: no interval rather than a zero-width one.
  const variance = n < 2 ? Number.POSITIVE_INFINITY : logs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1);
  const half = 1.96 * Math.sqrt(variance / n);
  return { ratio: Math.exp(mean), low: Math.exp(mean - half), high: Math.exp(mean + half), n };
}

/**
 * Profiler mode: the CPU each window's start and end cost, µs — the edge ticks' CPU beyond what their requests
 * cost at the not-recording rate, per window (two edges). Undefined when no window started or ended.
 */
export function windowCostMicros(result: PairedResult): number | undefined {
  const edge = result.edge;
  if (edge === undefined || edge.edges === 0) return undefined;
  return (2 * (edge.edgeCpuMicros - edge.edgeRequests * result.offCpuMicrosPerRequest)) / edge.edges;
}

/** One paired run; `extraEnv` selects the server's mode (PAIRED_PHASE_MS, PAIRED_PROFILER_INTERVAL_US). */
export async function pairedRun(
  durationSeconds: number,
  pinning: boolean,
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<PairedResult> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'ergometer-paired-'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...extraEnv,
    BENCH_COLLECTOR: `file:${path.join(dir, 'samples.ndjson')}`,
    ERGOMETER_COMMIT: 'bench',
  };
  const server = startChild('paired-server.js', env, SERVER_CPU, pinning);
  try {
    const { port } = await firstMessage<{ port: number }>(server, 'the paired server');
    const warmupSeconds = 2;
    const request: LoadRequest = {
      url: `http://127.0.0.1:${port}`,
      connections: 10,
      durationSeconds: warmupSeconds + durationSeconds,
    };
    const load = startChild(
      'load-generator.js',
      { ...process.env, BENCH_LOAD: JSON.stringify(request) },
      LOAD_CPU,
      pinning,
    );
    const loaded = firstMessage<LoadResult>(load, 'the load generator');
    await new Promise((resolve) => setTimeout(resolve, warmupSeconds * 1000));
    server.send({ type: 'measure' });
    await loaded;
    const result = new Promise<PairedResult>((resolve) => server.once('message', (m) => resolve(m as PairedResult)));
    server.send({ type: 'stop' });
    return await result;
  } finally {
    if (server.exitCode === null) {
      await Promise.race([once(server, 'exit'), new Promise((resolve) => setTimeout(resolve, 5000))]);
      if (server.exitCode === null) server.kill('SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 4);
  const seconds = Number(process.argv[3] ?? 8);
  const pinning = canPin();
  const ratios: number[] = [];
  const extras: number[] = [];
  const allCycles: PairedCycle[] = [];
  for (let run = 1; run <= runs; run++) {
    const result = await pairedRun(seconds, pinning);
    const ratio = result.offCpuMicrosPerRequest / result.onCpuMicrosPerRequest;
    const extra = result.onCpuMicrosPerRequest - result.offCpuMicrosPerRequest;
    ratios.push(ratio);
    extras.push(extra);
    const perWindow = windowCostMicros(result);
    if (result.edge !== undefined && perWindow !== undefined) {
      console.log(
        `paired: run ${run}: ${result.edge.edges / 2} windows, ${(perWindow / 1000).toFixed(1)} ms CPU each to start and end`,
      );
    }
    const cost = cycleCost(result.cycles);
    allCycles.push(...result.cycles);
    console.log(
      `paired: run ${run}/${runs}: agent off ${result.offCpuMicrosPerRequest.toFixed(1)} µs CPU/req ` +
        `(${result.offRequests} req), on ${result.onCpuMicrosPerRequest.toFixed(1)} µs (${result.onRequests} req): ` +
        `+${extra.toFixed(1)} µs, off/on ${ratio.toFixed(3)}; on/off over ${cost.n} cycles ×${cost.ratio.toFixed(3)} ` +
        `(95% ×${cost.low.toFixed(3)}–×${cost.high.toFixed(3)})`,
    );
  }
  const pooled = cycleCost(allCycles);
  console.log(
    `paired: all ${pooled.n} cycles: on/off ×${pooled.ratio.toFixed(3)} (95% ×${pooled.low.toFixed(3)}–×${pooled.high.toFixed(3)})`,
  );
  console.log(
    `paired: median off/on ${median(ratios).toFixed(3)} (min ${Math.min(...ratios).toFixed(3)}, ` +
      `max ${Math.max(...ratios).toFixed(3)}), median +${median(extras).toFixed(1)} µs CPU per request, ` +
      `node ${process.version}`,
  );
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
