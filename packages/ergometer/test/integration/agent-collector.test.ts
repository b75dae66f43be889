import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { decodeUsersSketch, estimateDistinctUsers, mergeUsersSketches } from '@ergometer/agent/users-sketch';
import { INGEST_TOKEN, READ_TOKEN, startTestCollector } from '../server/harness';

/** The test runner's environment minus NODE_TEST_CONTEXT, which would make the child report to the runner. */
function childEnv(): NodeJS.ProcessEnv {
  const { NODE_TEST_CONTEXT: _runner, ...env } = process.env;
  return env;
}

const APP = path.join(__dirname, '..', '..', '..', 'test', 'integration', 'fixtures', 'express-app.cjs');

/**
 * The agent's HTTP exporter against the real collector: a real Express app with the agent, 300
 * requests from 40 users, SIGTERM (the agent's exit flush), and then everything the collector stored.
 */
describe('agent → collector → DuckDB', () => {
  it('stores every sample once, counts every request, and counts the distinct users', async (t) => {
    let collectorLog = '';
    const collector = await startTestCollector(t, {
      log: (message) => {
        collectorLog += `${message}\n`;
      },
    });
    const app = spawn(process.execPath, [APP], {
      env: {
        ...childEnv(),
        ERGOMETER_COLLECTOR: collector.url,
        ERGOMETER_TOKEN: INGEST_TOKEN,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    app.stderr?.on('data', (c: Buffer) => {
      output += c.toString();
    });
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`app did not start: ${output}`)), 20_000);
      app.stdout?.on('data', (c: Buffer) => {
        const match = /listening (\d+)/.exec(c.toString());
        if (match) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      });
    });
    for (let i = 0; i < 300; i++) {
      const response = await fetch(`http://127.0.0.1:${port}/feed/${i}`, { headers: { 'x-user': `user-${i % 40}` } });
      assert.equal(response.status, 200);
      await response.text();
    }
    app.kill('SIGTERM');
    const code = await new Promise((resolve) => app.once('exit', resolve));
    assert.equal(code, 0, output);

    const metrics = await (await fetch(`${collector.url}/metrics`)).text();
    assert.equal(
      await collector.store.sampleCount('shop'),
      300,
      `${output}\n${collectorLog}\n${metrics.slice(0, 300)}`,
    );
    const [endpoint] = await collector.store.endpoints({ service: 'shop' });
    assert.equal(endpoint?.endpoint, 'GET /feed/:id');
    assert.equal(endpoint?.samples, 300);
    assert.ok((endpoint?.costMean ?? 0) > 0);
    const counts = await collector.store.counts({ service: 'shop' });
    assert.equal(
      counts.reduce((sum, c) => sum + c.requests, 0),
      300,
    );
    const users = await collector.store.users({ service: 'shop' });
    const sketches = users.flatMap((u) => u.sketches).map(decodeUsersSketch);
    assert.ok(sketches.length > 0);
    const merged = mergeUsersSketches(sketches[0] as (typeof sketches)[number], ...sketches.slice(1));
    assert.ok(Math.abs(estimateDistinctUsers(merged) - 40) <= 2, `${estimateDistinctUsers(merged)} users`);
    const [sample] = await collector.store.samples({ service: 'shop', limit: 1 });
    assert.ok(sample && sample.user.length > 0 && !sample.user.includes('user-'), 'user ids leave hashed');
    assert.ok(sample.hostClass.length > 0, 'the batch names its host class');

    const efficiency = await fetch(`${collector.url}/v1/efficiency?service=shop`, {
      headers: { authorization: `Bearer ${READ_TOKEN}` },
    });
    assert.equal(efficiency.status, 200);
    const days = (await efficiency.json()) as Array<{ activeUsers: number; requests: number; costPerUser: number }>;
    assert.equal(days.length, 1, JSON.stringify(days));
    assert.ok((days[0]?.activeUsers ?? 0) >= 1 && (days[0]?.requests ?? 0) >= 1 && (days[0]?.costPerUser ?? 0) > 0);
  });
});
