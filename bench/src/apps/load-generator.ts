import { WORKLOAD, type WorkloadRequest } from './workload';

/**
 * The client side of the throughput benchmark: autocannon in a process of its
 * own, so that throughput.ts can pin it to the CPU the server does not use.
 * Reads a {@link LoadRequest} from BENCH_LOAD (JSON), cycles every connection
 * through WORKLOAD, and sends a {@link LoadResult} to its parent over IPC.
 */

export interface LoadRequest {
  url: string;
  /** One path requested over and over instead of the WORKLOAD mix (the backend benchmark). */
  path?: string;
  connections: number;
  durationSeconds: number;
  /** Send exactly this many requests instead of loading for `durationSeconds` (autocannon's `amount`). */
  amount?: number;
  /** Requests per second over all connections; default: as fast as the server answers. */
  overallRate?: number;
}

export interface LoadResult {
  type: 'result';
  /** 2xx responses received. */
  requests: number;
  durationSeconds: number;
  non2xx: number;
  errors: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  /** CPU this process used over the run / wall time: near 1 means autocannon, not the server, was the limit. */
  loadGeneratorBusy: number;
  /** CPU this process used in all, start-up included, µs. */
  loadGeneratorCpuMicros: number;
}

/** The part of autocannon's API used here (the package ships no types). */
interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  overallRate?: number;
  amount?: number;
  requests?: readonly WorkloadRequest[];
}
interface AutocannonHistogram {
  p50: number;
  p99: number;
  total: number;
}
interface AutocannonResult {
  requests: AutocannonHistogram;
  latency: AutocannonHistogram;
  duration: number;
  non2xx: number;
  errors: number;
  '2xx': number;
}
type Autocannon = (options: AutocannonOptions) => Promise<AutocannonResult>;

function totalCpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

async function generateLoad(request: LoadRequest): Promise<LoadResult> {
  const autocannon = require('autocannon') as Autocannon;
  const cpuBefore = process.cpuUsage();
  const wallBefore = performance.now();
  const result = await autocannon({
    url: request.path === undefined ? request.url : `${request.url}${request.path}`,
    connections: request.connections,
    duration: request.durationSeconds,
    ...(request.overallRate === undefined ? {} : { overallRate: request.overallRate }),
    ...(request.amount === undefined ? {} : { amount: request.amount }),
    ...(request.path === undefined ? { requests: WORKLOAD } : {}),
  });
  const cpu = process.cpuUsage(cpuBefore);
  const wallMs = performance.now() - wallBefore;
  return {
    type: 'result',
    requests: result['2xx'],
    durationSeconds: result.duration,
    non2xx: result.non2xx,
    errors: result.errors,
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    loadGeneratorBusy: (cpu.user + cpu.system) / 1000 / wallMs,
    loadGeneratorCpuMicros: totalCpuMicros(),
  };
}

if (require.main === module) {
  const request = JSON.parse(process.env.BENCH_LOAD ?? 'null') as LoadRequest | null;
  if (request === null || process.send === undefined) {
    console.error(
      'usage: BENCH_LOAD=\'{"url":…,"connections":…,"durationSeconds":…}\' node load-generator.js, with IPC',
    );
    process.exit(2);
  }
  generateLoad(request).then(
    (result) => process.send?.(result, () => process.exit(0)),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
