/**
 * Runs test/export/fixtures/host-app.cjs in a child process (one agent per process) and drives it:
 * load over keep-alive HTTP, stats and shutdown over IPC.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import type { RetryPolicy } from '../../src/export/http-exporter';
import type { AgentOptions } from '../../src/options';

/** Fixtures are plain JavaScript that tsc does not copy: read them from the source tree. */
const FIXTURE = path.join(__dirname, '..', '..', '..', 'test', 'export', 'fixtures', 'host-app.cjs');

export interface HostStats {
  type: 'stats';
  queuedBytes: number;
  maxQueuedBytes: number;
  droppedPublished: number;
  dropReasons: Record<string, number>;
  retries: number;
  batchesDropped: number;
  internalErrors: string[];
}

type Message = HostStats | { type: 'listening'; port: number } | { type: 'fatal'; kind: string; message: string };

export class HostApp {
  /** uncaughtException / unhandledRejection seen in the app. */
  readonly fatal: string[] = [];
  /** Responses whose status or body differed from what the app answers without an agent. */
  readonly wrongResponses: string[] = [];
  /** Requests answered, by number: each one is a sample at sampleRate 1. */
  produced = 0;
  port = 0;
  stderr = '';
  private readonly waiting: ((message: Message) => void)[] = [];
  private readonly client = new http.Agent({ keepAlive: true, maxSockets: 8 });
  private nextRequest = 0;
  private loadRunning = false;
  private loadDone: Promise<void> = Promise.resolve();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(private readonly child: ChildProcess) {
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    child.on('message', (raw: unknown) => {
      const message = raw as Message;
      if (message.type === 'fatal') this.fatal.push(`${message.kind}: ${message.message}`);
      else this.waiting.shift()?.(message);
    });
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  static async start(options: AgentOptions, retry: Partial<RetryPolicy>): Promise<HostApp> {
    const child = fork(FIXTURE, [], {
      env: { ...process.env, FIXTURE_CONFIG: JSON.stringify({ options, retry }) },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    const app = new HostApp(child);
    const listening = await app.next();
    assert.equal(listening.type, 'listening', app.stderr);
    app.port = (listening as { port: number }).port;
    return app;
  }

  private next(timeoutMs = 30_000): Promise<Message> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no message from the host app; stderr:\n${this.stderr}`)),
        timeoutMs,
      );
      this.waiting.push((message) => {
        clearTimeout(timer);
        resolve(message);
      });
    });
  }

  /** Starts `workers` loops of requests, each pausing `gapMs` between two. */
  startLoad(workers: number, gapMs: number): void {
    this.loadRunning = true;
    const worker = async () => {
      while (this.loadRunning) {
        await this.request(this.nextRequest++);
        await new Promise((resolve) => setTimeout(resolve, gapMs));
      }
    };
    this.loadDone = Promise.all(Array.from({ length: workers }, worker)).then(() => undefined);
  }

  async stopLoad(): Promise<void> {
    this.loadRunning = false;
    await this.loadDone;
  }

  private request(n: number): Promise<void> {
    return new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port: this.port, path: `/work?n=${n}`, agent: this.client }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => {
          if (res.statusCode === 200 && body === `ok ${n} 499500`) this.produced++;
          else this.wrongResponses.push(`#${n}: ${res.statusCode} ${body}`);
          resolve();
        });
      });
      req.on('error', (error) => {
        this.wrongResponses.push(`#${n}: ${error.message}`);
        resolve();
      });
    });
  }

  async stats(): Promise<HostStats> {
    const reply = this.next();
    this.child.send({ type: 'stats' });
    return (await reply) as HostStats;
  }

  /** agent.shutdown({ timeoutMs }), then the app exits; returns its last stats. */
  async shutdown(timeoutMs: number): Promise<HostStats> {
    const reply = this.next(timeoutMs + 30_000);
    this.child.send({ type: 'shutdown', timeoutMs });
    const stats = (await reply) as HostStats;
    await this.exited;
    return stats;
  }

  kill(): void {
    this.client.destroy();
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}
