/**
 * Runs one fixture app (test/adapters/fixtures/*) in a child process of its own —
 * one agent per process — talks to it over IPC and HTTP, stops it, and reads the
 * NDJSON file its agent wrote. See fixtures/common.cjs for the app side.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { WireBatch } from '../../src/export/wire';

/** Fixtures are plain JavaScript that tsc does not copy: read them from the source tree. */
export const FIXTURES = path.join(__dirname, '..', '..', '..', 'test', 'adapters', 'fixtures');

/** What fixtures/common.cjs exports to the test process. */
interface FixtureCommon {
  STREAM: { chunks: number; gapMs: number; chunkBytes: number };
  streamChunk(i: number): string;
}
export const fixtureCommon = require(path.join(FIXTURES, 'common.cjs')) as FixtureCommon;

/** `none`: no agent; `start`: start() + the framework adapter; `register`: zero-code, node --import/--require. */
export type AgentMode = 'none' | 'start' | 'register';

export interface AppSpec {
  /** File in fixtures/. */
  fixture: string;
  /** ERGOMETER_SERVICE, and the name of the temp folder. */
  service: string;
  /** Extra environment for the fixture, e.g. which major of the framework to load. */
  env?: Record<string, string>;
  /** How node loads @ergometer/agent/register in `register` mode. */
  registerWith?: '--import' | '--require';
}

/** Batch header values the fixtures get through ERGOMETER_*; the test expects them back. */
export const HEADER_ENV = { commit: 'adapters-test-commit', host: 'adapters-test-host' };

type FixtureMessage =
  | { type: 'listening'; port: number }
  | { type: 'slow-started' }
  | { type: 'slow-done' }
  | { type: 'stream-done'; ms: number }
  | { type: 'fatal'; kind: string; message: string };

function isFixtureMessage(value: unknown): value is FixtureMessage {
  return typeof value === 'object' && value !== null && typeof (value as { type?: unknown }).type === 'string';
}

/** What is left of an app once it has exited. */
export interface StoppedApp {
  /** Whether the agent had written anything before it was asked to stop. */
  fileExistedBeforeStop: boolean;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  batches: WireBatch[];
  /** uncaughtException / unhandledRejection seen in the app, as `kind: stack`. */
  fatal: string[];
  stderr: string;
}

export class RunningApp {
  private readonly received: FixtureMessage[] = [];
  private readonly waiters: { type: FixtureMessage['type']; resolve: (message: FixtureMessage) => void }[] = [];
  private output = '';
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  port = 0;

  constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    readonly samplesFile: string,
  ) {
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      this.output += chunk;
    });
    child.on('message', (message: unknown) => {
      if (!isFixtureMessage(message)) return;
      const waiter = this.waiters.findIndex((w) => w.type === message.type);
      if (waiter !== -1) this.waiters.splice(waiter, 1)[0]!.resolve(message);
      else this.received.push(message);
    });
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get stderr(): string {
    return this.output;
  }

  /** The next message of this type not yet taken (including those that already arrived). */
  waitFor<T extends FixtureMessage['type']>(
    type: T,
    timeoutMs = 10_000,
  ): Promise<Extract<FixtureMessage, { type: T }>> {
    const index = this.received.findIndex((m) => m.type === type);
    if (index !== -1) {
      return Promise.resolve(this.received.splice(index, 1)[0] as Extract<FixtureMessage, { type: T }>);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`no '${type}' from the app within ${timeoutMs} ms; its stderr:\n${this.output}`));
      }, timeoutMs);
      const waiter = {
        type,
        resolve: (message: FixtureMessage) => {
          clearTimeout(timer);
          resolve(message as Extract<FixtureMessage, { type: T }>);
        },
      };
      this.waiters.push(waiter);
      this.exited.then(({ code }) => {
        const at = this.waiters.indexOf(waiter);
        if (at === -1) return;
        this.waiters.splice(at, 1);
        clearTimeout(timer);
        reject(new Error(`the app exited (${code}) before '${type}'; its stderr:\n${this.output}`));
      }, reject);
    });
  }

  /** Asks the app to stop (flushing its agent), waits for it to exit, and reads what the agent wrote. */
  async stop(timeoutMs = 10_000): Promise<StoppedApp> {
    const fileExistedBeforeStop = existsSync(this.samplesFile);
    if (this.child.connected) this.child.send('stop');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const { code, signal } = await this.exited;
    clearTimeout(timer);
    const text = existsSync(this.samplesFile) ? readFileSync(this.samplesFile, 'utf8') : '';
    rmSync(this.dir, { recursive: true, force: true });
    const fatal: string[] = [];
    for (const message of this.received) {
      if (message.type === 'fatal') fatal.push(`${message.kind}: ${message.message}`);
    }
    return {
      fileExistedBeforeStop,
      exitCode: code,
      signal,
      batches: text
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as WireBatch),
      fatal,
      stderr: this.output,
    };
  }
}

/** Environment of the test process minus anything that would configure the app's agent or node. */
function cleanEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value === undefined || key.startsWith('ERGOMETER_') || key === 'NODE_OPTIONS' || key.startsWith('NODE_TEST'))
      continue;
    env[key] = value;
  }
  return env;
}

/** Forks the fixture and resolves once it listens. */
export async function launch(spec: AppSpec, mode: AgentMode): Promise<RunningApp> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `ergometer-${spec.service}-`));
  const samplesFile = path.join(dir, 'samples.ndjson');
  const env: Record<string, string> = {
    ...cleanEnvironment(),
    ...spec.env,
    // Production is where the agent runs, and it keeps stack traces out of error pages.
    NODE_ENV: 'production',
    AGENT_MODE: mode,
    ERGOMETER_SERVICE: spec.service,
    ERGOMETER_COLLECTOR: `file:${samplesFile}`,
    ERGOMETER_COMMIT: HEADER_ENV.commit,
    ERGOMETER_HOST: HEADER_ENV.host,
    // Nothing may be written before shutdown: the test checks that shutdown flushes.
    ERGOMETER_FLUSH_INTERVAL_MS: '600000',
  };
  // Zero-code apps are configured by the environment alone; the others pass
  // sampleRate: 1 to start() themselves.
  if (mode === 'register') env.ERGOMETER_SAMPLE_RATE = '1';
  const execArgv = mode === 'register' ? [spec.registerWith ?? '--import', '@ergometer/agent/register'] : [];
  const child = fork(path.join(FIXTURES, spec.fixture), [], {
    cwd: FIXTURES,
    env,
    execArgv,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  const app = new RunningApp(child, dir, samplesFile);
  try {
    app.port = (await app.waitFor('listening')).port;
  } catch (error) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return app;
}

/** What the client saw. `date` is left out: it is the only header allowed to differ between two runs. */
export interface Reply {
  status: number;
  headers: Record<string, string | string[]>;
  body: string;
}

/** One request on a fresh connection (no keep-alive, so that each run sees the same headers). */
export function request(
  port: number,
  method: string,
  requestPath: string,
  body?: { text: string; contentType: string },
  timeoutMs = 10_000,
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: requestPath,
        agent: false,
        headers: body === undefined ? {} : { 'content-type': body.contentType },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('error', reject);
        res.on('end', () => {
          const headers: Record<string, string | string[]> = {};
          for (const name of Object.keys(res.headers).sort()) {
            const value = res.headers[name];
            if (name !== 'date' && value !== undefined) headers[name] = value;
          }
          resolve({ status: res.statusCode ?? 0, headers, body: text });
        });
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${requestPath}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body?.text);
  });
}

/**
 * GET /slow, and destroy the socket as soon as the handler has started (it then
 * waits for the close before it writes). Resolves once the app has written its
 * too-late answer.
 */
export async function abortSlowRequest(app: RunningApp): Promise<void> {
  const req = http.request({ host: '127.0.0.1', port: app.port, method: 'GET', path: '/slow', agent: false });
  req.on('error', () => undefined); // ECONNRESET / socket hang up: we hung up.
  req.end();
  await app.waitFor('slow-started');
  req.destroy();
  await app.waitFor('slow-done');
}
