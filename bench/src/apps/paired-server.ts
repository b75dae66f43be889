import type { AddressInfo } from 'node:net';
import type { RequestHandler } from 'express';

/**
 * The server of the paired overhead benchmark (paired.ts): the throughput app
 * with the agent at sampleRate 1, whose middleware is skipped every other
 * phase of PAIRED_PHASE_MS. CPU time per request is summed per phase, so
 * "agent on" and "agent off" are measured in the same process, interleaved
 * every few hundred milliseconds: both see the same machine, the same JIT
 * state and the same noisy neighbours, which separate processes a minute apart
 * do not on a shared VM.
 *
 *   BENCH_COLLECTOR  the agent's collector (`file:` URL in a temp dir)
 *   PAIRED_PHASE_MS  length of one phase (default 250)
 *
 * Talks to its parent over IPC: sends `{ type: 'listening', port }`; on
 * `{ type: 'measure' }` starts summing (after the warm-up); on
 * `{ type: 'stop' }` answers with a {@link PairedResult} and exits.
 */

/** CPU per request with the agent's middleware run (`on`) and skipped (`off`). */
export interface PairedResult {
  type: 'result';
  offCpuMicrosPerRequest: number;
  onCpuMicrosPerRequest: number;
  offRequests: number;
  onRequests: number;
}

interface Phase {
  cpuMicros: number;
  requests: number;
}

function cpuMicros(): number {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

function serve(): void {
  const { start }: typeof import('@ergometer/agent') = require('@ergometer/agent');
  const agent = start({ service: 'bench-paired', collector: process.env.BENCH_COLLECTOR, sampleRate: 1 });
  const middleware = agent.express();
  let agentOn = false;
  let requests = 0;
  const instrument: RequestHandler = (req, res, next) => {
    requests++;
    if (agentOn) middleware(req, res, next);
    else next();
  };
  const { createBenchApp }: typeof import('./app') = require('./app');
  const server = createBenchApp(instrument).listen(0, '127.0.0.1', () => {
    process.send?.({ type: 'listening', port: (server.address() as AddressInfo).port });
  });

  const phases: Record<'on' | 'off', Phase> = { on: { cpuMicros: 0, requests: 0 }, off: { cpuMicros: 0, requests: 0 } };
  let measuring = false;
  let lastCpuMicros = cpuMicros();
  let lastRequests = 0;
  const phaseMs = Number(process.env.PAIRED_PHASE_MS ?? 250);
  setInterval(() => {
    const nowCpuMicros = cpuMicros();
    if (measuring) {
      const phase = agentOn ? phases.on : phases.off;
      phase.cpuMicros += nowCpuMicros - lastCpuMicros;
      phase.requests += requests - lastRequests;
    }
    lastCpuMicros = nowCpuMicros;
    lastRequests = requests;
    agentOn = !agentOn;
  }, phaseMs).unref();

  process.on('message', (message: { type: string }) => {
    if (message.type === 'measure') measuring = true;
    if (message.type !== 'stop') return;
    const result: PairedResult = {
      type: 'result',
      offCpuMicrosPerRequest: phases.off.cpuMicros / phases.off.requests,
      onCpuMicrosPerRequest: phases.on.cpuMicros / phases.on.requests,
      offRequests: phases.off.requests,
      onRequests: phases.on.requests,
    };
    server.close();
    server.closeAllConnections();
    process.send?.(result, () => {
      agent.shutdown().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  });
}

if (require.main === module) {
  if (process.send === undefined) {
    console.error('usage: node paired-server.js, forked with an IPC channel (run paired.js)');
    process.exit(2);
  }
  serve();
}
