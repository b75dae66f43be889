/**
 * The demo's fleet: one child process of the sample service per host, each started with the commit
 * it runs (ERGOMETER_COMMIT), replaced one by one on a rollout the way a deploy tool does it — the
 * new process is started and warmed up, traffic moves to it, then the old one is stopped (SIGTERM:
 * the agent writes what it has queued). Each process also answers a flush over its IPC channel, so
 * that the detectors run on every sample of a phase rather than on what a timer happened to send.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { DemoVersion } from './service';

export interface FleetOptions {
  dbFile: string;
  collector: string;
  ingestToken: string;
  service: string;
  /** Where service processes write their stderr (crashes are reported with it). */
  onStderr: (host: string, text: string) => void;
  /** Warms a new process up before it takes traffic (JIT, caches), given its port. */
  warmUp: (port: number) => Promise<void>;
}

export interface HostProcess {
  host: string;
  version: DemoVersion;
  commit: string;
  port: number;
  child: ChildProcess;
}

const SERVICE_ENTRY = path.join(__dirname, 'service.js');

export class Fleet {
  private readonly hosts = new Map<string, HostProcess>();
  private stopping = false;
  private flushSeq = 0;

  constructor(private readonly options: FleetOptions) {}

  /** The processes serving now, by host. */
  get serving(): HostProcess[] {
    return [...this.hosts.values()];
  }

  /** Starts `host` on `version` (replacing what it ran, after the new process is ready). */
  async deploy(host: string, version: DemoVersion, commit: string): Promise<void> {
    const next = await this.startProcess(host, version, commit);
    await this.options.warmUp(next.port);
    const previous = this.hosts.get(host);
    this.hosts.set(host, next);
    // Requests already sent to the old process are answered before it stops.
    if (previous) await sleep(500).then(() => stopProcess(previous.child));
  }

  /**
   * Has every serving process write the samples it has recorded to the collector, and waits for the
   * collector's acknowledgements (a 200 means stored). Resolves with the hosts that did not answer
   * within `timeoutMs`: their last samples may be missing from what the detectors see next.
   */
  async flushAll(timeoutMs = 10_000): Promise<string[]> {
    const late: string[] = [];
    await Promise.all(
      this.serving.map(async (h) => {
        if (!(await flushProcess(h.child, ++this.flushSeq, timeoutMs))) late.push(h.host);
      }),
    );
    return late;
  }

  async stopAll(): Promise<void> {
    this.stopping = true;
    const all = [...this.hosts.values()];
    this.hosts.clear();
    await Promise.all(all.map((h) => stopProcess(h.child)));
  }

  private startProcess(host: string, version: DemoVersion, commit: string): Promise<HostProcess> {
    // Without inlining, V8's profiler charges the time of a small hot function such as dropNearDuplicates to
    // that function instead of to the caller it was inlined into (docs/agent.md, "Inlining"): the root cause
    // names what a reader would look for. TurboFan's and (Node 22 on) Maglev's inlining. The same flags for
    // every version, so the comparison stays fair.
    const child = spawn(process.execPath, ['--no-turbo-inlining', '--no-maglev-inlining', SERVICE_ENTRY], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: {
        ...process.env,
        DEMO_DB: this.options.dbFile,
        DEMO_VERSION: version,
        ERGOMETER_SERVICE: this.options.service,
        ERGOMETER_COLLECTOR: this.options.collector,
        ERGOMETER_TOKEN: this.options.ingestToken,
        ERGOMETER_COMMIT: commit,
        ERGOMETER_HOST: host,
      },
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
      this.options.onStderr(host, chunk);
    });
    return new Promise<HostProcess>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
      const onExit = (code: number | null, signal: string | null) => {
        reject(
          Object.assign(
            new Error(
              `the sample service on ${host} (${version}) exited (${signal ?? code}) before it was ready:\n${stderr}`,
            ),
            { code: 'ERGOMETER_DEMO_SERVICE_FAILED' },
          ),
        );
      };
      child.once('exit', onExit);
      lines.once('line', (line) => {
        child.off('exit', onExit);
        child.once('exit', (code, signal) => {
          if (!this.stopping && this.hosts.get(host)?.child === child) {
            this.options.onStderr(host, `exited unexpectedly (${signal ?? code})\n`);
          }
        });
        try {
          const { port } = JSON.parse(line) as { port: number };
          resolve({ host, version, commit, port, child });
        } catch {
          reject(new Error(`the sample service on ${host} printed ${JSON.stringify(line)} instead of its port`));
        }
      });
    });
  }
}

/** Whether `child` confirmed the flush `id` within `timeoutMs` (false also if it exited or has no channel). */
function flushProcess(child: ChildProcess, id: number, timeoutMs: number): Promise<boolean> {
  if (!child.connected) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(ok);
    };
    const onMessage = (message: { type?: unknown; id?: unknown }) => {
      if (message?.type === 'flushed' && message.id === id) done(true);
    };
    const onExit = () => done(false);
    const timer = setTimeout(() => done(false), timeoutMs);
    child.on('message', onMessage);
    child.once('exit', onExit);
    child.send({ type: 'flush', id }, (error) => {
      if (error) done(false);
    });
  });
}

function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
