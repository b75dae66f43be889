/**
 * The agent package's profiled Express app (packages/agent/test/profile/fixtures/profiled-express.cjs) in a
 * child process, for the tests that put it in front of a real collector: start it with agent options, GET its
 * routes, and shut it down for its report (what its agent saw on its diagnostics channels).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import type { TestContext } from 'node:test';

/** Plain JavaScript, read from the agent package's source tree. */
const APP = path.join(
  __dirname,
  '..',
  '..',
  '..',
  '..',
  'agent',
  'test',
  'profile',
  'fixtures',
  'profiled-express.cjs',
);

/** What the app reports after its agent shut down. */
export interface AppReport {
  type: 'done';
  profiling: { recording: boolean; chosenBy: string } | null;
  profilesSent: number;
  profilingChosen: Array<{ profile: boolean; by: string; reason?: string }>;
  /** Codes of the process warnings it emitted. */
  warnings: string[];
}

type Message = AppReport | { type: 'listening'; port: number } | { type: 'fatal'; kind: string; message: string };

export interface ProfiledApp {
  port: number;
  /** What the app wrote on stderr so far (warnings), for assertion messages. */
  readonly stderr: string;
  /** GET `route`: resolves with the body of a 200, rejects on any other status. */
  get(route: string): Promise<string>;
  /** Shuts the agent down (flushing what it holds) and resolves with the report; asserts nothing fatal happened. */
  shutdown(): Promise<AppReport>;
}

export async function startProfiledApp(t: TestContext, options: Record<string, unknown>): Promise<ProfiledApp> {
  const { NODE_TEST_CONTEXT: _runner, ...env } = process.env;
  const child: ChildProcess = fork(APP, [], {
    env: { ...env, FIXTURE_CONFIG: JSON.stringify({ options }) },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const fatal: string[] = [];
  const waiters: ((m: Message) => void)[] = [];
  child.on('message', (m: Message) => {
    if (m.type === 'fatal') fatal.push(`${m.kind}: ${m.message}`);
    else waiters.shift()?.(m);
  });
  const next = () =>
    new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no message from the app: ${stderr}`)), 60_000);
      waiters.push((m) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
  const { port } = (await next()) as { port: number };
  const client = new http.Agent({ keepAlive: true });
  t.after(() => client.destroy());
  return {
    port,
    get stderr() {
      return stderr;
    },
    get: (route: string) =>
      new Promise<string>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port, path: route, agent: client }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => (body += chunk));
            res.on('end', () =>
              res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${route}: HTTP ${res.statusCode}`)),
            );
          })
          .on('error', reject);
      }),
    async shutdown() {
      const done = next();
      child.send({ type: 'shutdown' });
      const report = (await done) as AppReport;
      assert.deepEqual(fatal, [], stderr);
      return report;
    },
  };
}
