/**
 * Runs test/profile/fixtures/profiled-express.cjs in a child process (one agent, one profiler per
 * process), drives interleaved load at its two endpoints, and reads back pprof profiles.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import type { AgentOptions } from '../../src/options';

/** Fixtures are plain JavaScript that tsc does not copy: read them from the source tree. */
const FIXTURE = path.join(__dirname, '..', '..', '..', 'test', 'profile', 'fixtures', 'profiled-express.cjs');

export interface AppReport {
  type: 'done';
  /** Thread CPU time from just before the agent started to just after its shutdown, ns. */
  threadCpuNs: number;
  pprofLoaded: boolean;
  profiling: {
    recording: boolean;
    sampler: string;
    samplerFallback: string | null;
    contextPath: string;
    schedule: string;
    samplingIntervalMicros: number;
    windowMs: number;
    labelFraction: number;
    labelHooks: boolean;
  } | null;
  profilesSent: number;
  profilesDropped: string[];
  internalErrors: string[];
}

type Message = AppReport | { type: 'listening'; port: number } | { type: 'fatal'; kind: string; message: string };

export class ProfiledApp {
  readonly fatal: string[] = [];
  port = 0;
  stderr = '';
  private readonly waiting: ((message: Message) => void)[] = [];
  private readonly client = new http.Agent({ keepAlive: true, maxSockets: 4 });

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
  }

  /** `layered`: the Express app (with agent.express()) is served through agent.http(), two layers per request. */
  static async start(
    options: AgentOptions,
    execArgv: string[] = [],
    fixture: { layered?: boolean } = {},
  ): Promise<ProfiledApp> {
    const { NODE_TEST_CONTEXT: _runner, ...env } = process.env;
    const child = fork(FIXTURE, [], {
      env: { ...env, FIXTURE_CONFIG: JSON.stringify({ options, ...fixture }) },
      execArgv,
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    const app = new ProfiledApp(child);
    const listening = await app.next();
    assert.equal(listening.type, 'listening', app.stderr);
    app.port = (listening as { port: number }).port;
    return app;
  }

  private next(timeoutMs = 60_000): Promise<Message> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no message from the app; stderr:\n${this.stderr}`)), timeoutMs);
      this.waiting.push((message) => {
        clearTimeout(timer);
        resolve(message);
      });
    });
  }

  /** GET `route`, parsed as JSON (outside the load's keep-alive pool). */
  async getJson(route: string): Promise<unknown> {
    return (await fetch(`http://127.0.0.1:${this.port}${route}`)).json();
  }

  get(route: string): Promise<number> {
    return new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: this.port, path: route, agent: this.client }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        })
        .on('error', reject);
    });
  }

  /**
   * `rounds` rounds of one /heavy and `lightPerHeavy` /light requests, all in flight together, so the
   * two endpoints' callbacks interleave on the app's event loop.
   */
  async load(rounds: number, lightPerHeavy = 4, minDurationMs = 0): Promise<{ heavy: number; light: number }> {
    let heavy = 0;
    let light = 0;
    const startedMs = Date.now();
    for (let round = 0; round < rounds || Date.now() - startedMs < minDurationMs; round++) {
      const statuses = await Promise.all([
        this.get(`/heavy/${round}`),
        ...Array.from({ length: lightPerHeavy }, (_, i) => this.get(`/light/${round * lightPerHeavy + i}`)),
      ]);
      for (const status of statuses) assert.equal(status, 200);
      heavy++;
      light += lightPerHeavy;
    }
    return { heavy, light };
  }

  /** Asks the app to shut its agent down (the last profile is flushed) and returns its report. */
  async shutdown(): Promise<AppReport> {
    const done = this.next();
    this.child.send({ type: 'shutdown' });
    const report = await done;
    assert.equal(report.type, 'done');
    await this.exited();
    return report as AppReport;
  }

  /** SIGTERM, as a process manager stops a service; resolves with how the process ended. */
  async terminate(): Promise<NodeJS.Signals | number | null> {
    const ended = new Promise<NodeJS.Signals | number | null>((resolve) =>
      this.child.once('exit', (code, signal) => resolve(signal ?? code)),
    );
    this.child.kill('SIGTERM');
    return ended;
  }

  exited(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  kill(): void {
    this.client.destroy();
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/**
 * Starts the fixture app with a `file:` collector in a fresh temp folder (`dir/samples.ndjson`, its
 * profiles in `dir/samples.profiles`), service `shop`, commit `c1`, no exit flush unless `options` say
 * otherwise; kills the app and removes the folder when the test ends, pass or fail.
 */
export async function startInTempDir(
  t: TestContext,
  options: Partial<AgentOptions>,
  execArgv: string[] = [],
  fixture: { layered?: boolean } = {},
): Promise<{ app: ProfiledApp; dir: string }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-profile-'));
  let app: ProfiledApp | undefined;
  t.after(() => {
    app?.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  app = await ProfiledApp.start(
    {
      service: 'shop',
      commit: 'c1',
      collector: `file:${path.join(dir, 'samples.ndjson')}`,
      exitFlushTimeoutMs: 0,
      ...options,
    },
    execArgv,
    fixture,
  );
  return { app, dir };
}

/** One sample of a decoded profile: its stack (leaf first) as function names, its values and labels. */
export interface DecodedSample {
  /** Leaf first; `line`: the location's line; `startLine`: the function's (its identity with name and file). */
  stack: { name: string; file: string; line: number; startLine: number }[];
  count: number;
  cost: number;
  labels: Record<string, string>;
}

export interface DecodedProfile {
  sampleTypes: [string, string][];
  samples: DecodedSample[];
}

/** Decodes a pprof (gzipped or not) with pprof-format; the cost column is found by type name. */
export function decodePprof(body: Buffer): DecodedProfile {
  const raw = body[0] === 0x1f && body[1] === 0x8b ? gunzipSync(body) : body;
  const profile = Profile.decode(raw);
  const str = (i: number | bigint) => profile.stringTable.strings[Number(i)] ?? '';
  const sampleTypes = profile.sampleType.map((t) => [str(t.type), str(t.unit)] as [string, string]);
  const countAt = sampleTypes.findIndex(([type]) => type === 'samples');
  const costAt = sampleTypes.findIndex(([type]) => type === 'cpu' || type === 'instructions');
  const functions = new Map(profile.function.map((f) => [String(f.id), f]));
  const locations = new Map(profile.location.map((l) => [String(l.id), l]));
  const samples = profile.sample.map((sample) => ({
    stack: sample.locationId.map((id) => {
      const line = locations.get(String(id))?.line[0];
      const fn = functions.get(String(line?.functionId ?? 0));
      return {
        name: fn ? str(fn.name) : '',
        file: fn ? str(fn.filename) : '',
        line: Number(line?.line ?? 0),
        startLine: Number(fn?.startLine ?? 0),
      };
    }),
    count: Number(sample.value[countAt] ?? 0),
    cost: Number(sample.value[costAt] ?? 0),
    labels: Object.fromEntries(sample.label.map((l) => [str(l.key), str(l.str)])),
  }));
  return { sampleTypes, samples };
}
