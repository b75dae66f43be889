/**
 * Every adapter against the real framework (both majors where two exist), and
 * zero-code registration from ESM and CommonJS: endpoint names, statuses,
 * flags, batch headers, and the promise that the host app never notices the
 * agent — same responses, errors handled as before, aborted clients and
 * streamed responses measured without incident.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import type { WireBatch, WireSample } from '../../src/export/wire';

const FIXTURES = path.join(__dirname, '..', '..', '..', 'test', 'frameworks', 'fixtures');

interface Running {
  port: number;
  child: ChildProcess;
  errors: string[];
  file: string;
  stop(): Promise<WireBatch[]>;
}

async function startApp(
  framework: string,
  options: { agent?: boolean; script?: string; execArgv?: string[] } = {},
): Promise<Running> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `ergometer-${framework}-`));
  const file = path.join(dir, 'samples.ndjson');
  const errors: string[] = [];
  const child = fork(path.join(FIXTURES, options.script ?? 'app.js'), {
    execArgv: options.execArgv ?? [],
    env: {
      ...process.env,
      FRAMEWORK: framework,
      AGENT: options.agent === false ? '0' : '1',
      ERGOMETER_SERVICE: `svc-${framework}`,
      ERGOMETER_COLLECTOR: `file:${file}`,
      ERGOMETER_SAMPLE_RATE: '1',
      ERGOMETER_COMMIT: 'commit-1',
      ERGOMETER_HOST: 'test-host',
      ERGOMETER_REGION: 'test-region',
    },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk;
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.on('message', (message: { port?: number; event?: string; message?: string }) => {
      if (message.port !== undefined) resolve(message.port);
      else errors.push(`${message.event}: ${message.message}`);
    });
    child.once('exit', (code) => reject(new Error(`${framework} exited with ${code}: ${stderr}`)));
  });
  return {
    port,
    child,
    errors,
    file,
    async stop() {
      child.send('stop');
      await new Promise((resolve) => child.once('exit', resolve));
      let text = '';
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        // no batch written
      }
      rmSync(dir, { recursive: true, force: true });
      return text
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as WireBatch);
    },
  };
}

interface Reply {
  status: number;
  body: string;
  contentType: string | undefined;
}

function get(port: number, requestPath: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: requestPath, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, contentType: res.headers['content-type'] }));
      })
      .on('error', reject);
  });
}

/** Sends a request and destroys the socket after `afterMs`, before the response. */
function abortAfter(port: number, requestPath: string, afterMs: number): Promise<void> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: requestPath, agent: false });
    req.on('error', () => resolve());
    req.on('response', () => resolve());
    setTimeout(() => {
      req.destroy();
      resolve();
    }, afterMs);
  });
}

const samplesOf = (batches: WireBatch[]): WireSample[] => batches.flatMap((b) => b.samples);
const find = (samples: WireSample[], endpoint: string) => samples.filter((s) => s.endpoint === endpoint);

const FRAMEWORKS = [
  { name: 'express5', unmatched: 'GET (unmatched)', errors: true },
  { name: 'express4', unmatched: 'GET (unmatched)', errors: true },
  { name: 'fastify5', unmatched: 'GET (unmatched)', errors: true },
  { name: 'fastify4', unmatched: 'GET (unmatched)', errors: true },
  { name: 'koa', unmatched: 'GET (unmatched)', errors: true },
  { name: 'hono', unmatched: 'GET (unmatched)', errors: true },
  // No router: the endpoint is the path with identifiers replaced.
  { name: 'http', unmatched: 'GET /nothing/here', errors: false },
] as const;

for (const fw of FRAMEWORKS) {
  describe(fw.name, () => {
    test('endpoints, statuses, flags and the batch header', async () => {
      const app = await startApp(fw.name);
      const user = await get(app.port, '/users/42?x=1');
      assert.equal(user.status, 200);
      assert.deepEqual(JSON.parse(user.body), { id: '42', name: 'user 42' });
      assert.equal((await get(app.port, '/api/items/9')).status, 200);
      assert.equal((await get(app.port, '/nothing/here')).status, 404);
      const batches = await app.stop();
      assert.deepEqual(app.errors, []);

      const samples = samplesOf(batches);
      const [userSample] = find(samples, 'GET /users/:id');
      assert.ok(userSample, `no GET /users/:id in ${JSON.stringify(samples.map((s) => s.endpoint))}`);
      assert.equal(userSample.status, 200);
      assert.ok(userSample.cost > 0 && userSample.wallMs > 0);
      assert.equal(userSample.weight, 1);
      assert.deepEqual(userSample.flags, { variant: 'b' });
      const nested = fw.name === 'http' ? 'GET /api/items/:id' : 'GET /api/items/:itemId';
      assert.equal(
        find(samples, nested).length,
        1,
        `no ${nested} in ${JSON.stringify(samples.map((s) => s.endpoint))}`,
      );
      const [missing] = find(samples, fw.unmatched);
      assert.equal(missing?.status, 404);
      assert.equal(missing?.flags, undefined, 'flags belong to the request that recorded them');
      assert.equal(samples.length, 3);

      for (const batch of batches) {
        assert.equal(batch.v, 1);
        assert.equal(batch.service, `svc-${fw.name}`);
        assert.equal(batch.commit, 'commit-1');
        assert.equal(batch.host, 'test-host');
        assert.equal(batch.region, 'test-region');
        assert.match(batch.metric, /^(cpu_ns|instructions)$/);
        assert.match(batch.agent.version, /^\d+\.\d+\.\d+/);
        assert.equal(batch.agent.runtime, `node ${process.version}`);
        assert.ok(batch.agent.counter.length > 0);
        assert.ok(batch.batchId.length > 0);
      }
    });

    test('the app answers exactly as without the agent, and never sees an agent error', async () => {
      const paths = [
        '/users/7',
        '/api/items/3',
        '/nothing',
        '/stream',
        ...(fw.errors ? ['/boom-sync', '/boom-async'] : []),
      ];
      const replies: Record<string, Reply[]> = { with: [], without: [] };
      for (const mode of ['without', 'with'] as const) {
        const app = await startApp(fw.name, { agent: mode === 'with' });
        for (const p of paths) replies[mode]!.push(await get(app.port, p));
        await app.stop();
        assert.deepEqual(app.errors, [], `${mode} agent`);
      }
      assert.deepEqual(replies.with, replies.without);
    });

    test('errors, aborted clients and streamed responses', async () => {
      const app = await startApp(fw.name);
      if (fw.errors) {
        assert.equal((await get(app.port, '/boom-sync')).status, 500);
        assert.equal((await get(app.port, '/boom-async')).status, 500);
      }
      await abortAfter(app.port, '/slow', 50);
      const streamed = await get(app.port, '/stream');
      assert.equal(streamed.body.split('\n').filter(Boolean).length, 5);
      // Let the aborted handler finish its timer and write to a closed socket.
      await new Promise((resolve) => setTimeout(resolve, 400));
      const samples = samplesOf(await app.stop());
      assert.deepEqual(app.errors, []);
      if (fw.errors) {
        assert.deepEqual(
          find(samples, 'GET /boom-sync').map((s) => s.status),
          [500],
        );
        assert.deepEqual(
          find(samples, 'GET /boom-async').map((s) => s.status),
          [500],
        );
      }
      const [slow] = find(samples, 'GET /slow');
      assert.equal(slow?.aborted, true, JSON.stringify(slow));
      const [stream] = find(samples, 'GET /stream');
      assert.ok(
        stream && stream.wallMs >= 5 * 20 * 0.9,
        `stream sample must cover the whole stream: ${JSON.stringify(stream)}`,
      );
      assert.ok(stream.aborted === undefined);
    });
  });
}

describe('zero-code registration', () => {
  test('ESM app: node --import @ergometer/agent/register', async () => {
    const app = await startApp('register-esm', {
      script: 'register-app.mjs',
      execArgv: ['--import', '@ergometer/agent/register'],
    });
    assert.equal((await get(app.port, '/users/5')).status, 200);
    assert.equal((await get(app.port, '/elsewhere')).status, 404);
    const samples = samplesOf(await app.stop());
    assert.deepEqual(app.errors, []);
    assert.deepEqual(
      samples.map((s) => [s.endpoint, s.status, s.flags?.variant]),
      [
        ['GET /users/:id', 200, 'b'],
        ['GET /elsewhere', 404, undefined],
      ],
    );
  });

  test('CommonJS Express app without the adapter: node --require, routes from req.route', async () => {
    const app = await startApp('register-express', { execArgv: ['--require', '@ergometer/agent/register'] });
    assert.equal((await get(app.port, '/users/5')).status, 200);
    assert.equal((await get(app.port, '/api/items/6')).status, 200);
    assert.equal((await get(app.port, '/nope')).status, 404);
    const samples = samplesOf(await app.stop());
    assert.deepEqual(app.errors, []);
    assert.deepEqual(samples.map((s) => s.endpoint).sort(), [
      'GET (unmatched)',
      'GET /api/items/:itemId',
      'GET /users/:id',
    ]);
  });

  test('a bad configuration never stops the app: one line on stderr, app runs uninstrumented', async () => {
    const child = fork(path.join(FIXTURES, 'register-app.mjs'), {
      execArgv: ['--import', '@ergometer/agent/register'],
      env: { ...process.env, ERGOMETER_SERVICE: '', ERGOMETER_COLLECTOR: '' },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk;
    });
    const port = await new Promise<number>((resolve) =>
      child.once('message', (m: { port: number }) => resolve(m.port)),
    );
    assert.equal((await get(port, '/users/1')).status, 200);
    child.send('stop');
    await new Promise((resolve) => child.once('exit', resolve));
    assert.match(stderr, /ergometer: not instrumenting this process: .*service \(ERGOMETER_SERVICE\).*required/);
  });
});
