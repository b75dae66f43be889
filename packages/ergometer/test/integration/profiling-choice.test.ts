/**
 * Which processes profile, end to end: real agent processes (the agent package's profiled Express app) with
 * `profile.processFraction` at its default over http, `"collector"`, against a real collector that chooses
 * (POST /v1/profiling); and against collectors that cannot choose (an older one without the route, none at all).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { INGEST_TOKEN, parsePrometheus, startTestCollector } from '../server/harness';
import { type AppReport, startProfiledApp } from './profiled-app';

type Profiling = NonNullable<AppReport['profiling']>;

/** One agent process of service shop, commit c1, with the profiler at its defaults but for short periods. */
async function startAgentProcess(t: TestContext, collector: string, host: string) {
  const app = await startProfiledApp(t, {
    service: 'shop',
    commit: 'c1',
    host,
    collector,
    token: INGEST_TOKEN,
    exitFlushTimeoutMs: 0,
    requestTimeoutMs: 2000,
    profile: { enabled: true, dutyCycle: 1, periodMs: 1000, intervalMicros: 2000 },
  });
  return {
    host,
    get: app.get,
    shutdown: app.shutdown,
    /** agent.profiling once the process knows whether it profiles. */
    async chosen(): Promise<Profiling | null> {
      for (const started = Date.now(); Date.now() - started < 30_000; ) {
        const profiling = JSON.parse(await app.get('/profiling')) as Profiling | null;
        if (profiling?.chosenBy !== 'pending') return profiling;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`${host} had no answer in 30 s: ${app.stderr}`);
    },
  };
}

describe('which processes profile', () => {
  it('the collector chooses: of three processes of a commit, its minimum of one profiles and ships profiles', async (t) => {
    const collector = await startTestCollector(t, { profiling: { minProcesses: 1, processFraction: 0 } });
    const apps = [];
    for (const host of ['web-1', 'web-2', 'web-3']) apps.push(await startAgentProcess(t, collector.url, host));
    const chosen = await Promise.all(apps.map((app) => app.chosen()));
    const profiling = apps.filter((_, i) => chosen[i] !== null);
    assert.equal(profiling.length, 1, JSON.stringify(chosen));
    const yes = chosen.find((p) => p !== null);
    assert.equal(yes?.chosenBy, 'collector');
    assert.equal(yes?.recording, true);
    // Load on all three for a few periods: only the chosen one sends profiles, every one checks in.
    const startedMs = Date.now();
    for (let i = 0; Date.now() - startedMs < 3000; i++) {
      await Promise.all(apps.map((app) => Promise.all([app.get(`/heavy/${i}`), app.get(`/light/${i}`)])));
    }
    const metrics = parsePrometheus(await (await fetch(`${collector.url}/metrics`)).text());
    assert.equal(metrics.get('ergometer_profiling_processes'), 3);
    assert.equal(metrics.get('ergometer_profiling_processes_profiling'), 1);
    const reports = [];
    for (const app of apps) reports.push(await app.shutdown());
    for (const [i, report] of reports.entries()) {
      const profiles = chosen[i] === null ? 0 : report.profilesSent;
      assert.equal(report.profilesSent, profiles, `${apps[i]?.host} sent profiles without being chosen`);
      assert.deepEqual(
        report.profilingChosen.map(({ profile, by }) => ({ profile, by })),
        [{ profile: chosen[i] !== null, by: 'collector' }],
      );
      assert.deepEqual(
        report.warnings.filter((w) => w.startsWith('ERGOMETER_')),
        [],
      );
    }
    const stored = (await collector.get('/v1/profiles?service=shop')).json as Array<{ host: string }>;
    assert.ok(stored.length >= 2, `${stored.length} profiles stored`);
    assert.deepEqual(new Set(stored.map((row) => row.host)), new Set([profiling[0]?.host]));
  });

  it('a collector without the route (older): the process profiles, and says why once', async (t) => {
    let questions = 0;
    const old = http.createServer((req, res) => {
      req.resume();
      if (req.url === '/v1/profiling') questions++;
      const found = req.url?.startsWith('/v1/samples') || req.url?.startsWith('/v1/profiles');
      res.writeHead(found ? 200 : 404, { 'content-type': 'application/json' });
      res.end(found ? '{"accepted":0}' : '{"error":{"code":"ERGOMETER_NOT_FOUND","message":"no route"}}');
    });
    await new Promise<void>((resolve) => old.listen(0, '127.0.0.1', resolve));
    t.after(() => old.close());
    const app = await startAgentProcess(t, `http://127.0.0.1:${(old.address() as AddressInfo).port}`, 'web-1');
    const profiling = await app.chosen();
    assert.equal(profiling?.chosenBy, 'fallback');
    assert.equal(profiling?.recording, true);
    // No check-ins follow a refusal: two periods later the collector was asked once.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    assert.equal(questions, 1);
    const report = await app.shutdown();
    assert.equal(report.profilingChosen.length, 1);
    assert.match(report.profilingChosen[0]?.reason ?? '', /refused the question with HTTP 404/);
    assert.deepEqual(
      report.warnings.filter((w) => w === 'ERGOMETER_PROFILING_NOT_CHOSEN'),
      ['ERGOMETER_PROFILING_NOT_CHOSEN'],
    );
    assert.ok(report.profilesSent >= 1, 'it profiled');
  });

  it('no collector at all for the first seconds: the process profiles, as with processFraction 1', async (t) => {
    // A port with nothing behind it: every attempt is refused at once.
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const app = await startAgentProcess(t, `http://127.0.0.1:${port}`, 'web-1');
    const before = JSON.parse(await app.get('/profiling')) as Profiling;
    assert.equal(before.chosenBy, 'pending');
    assert.equal(before.recording, false, 'the profiler waits for the answer');
    const profiling = await app.chosen();
    assert.equal(profiling?.chosenBy, 'fallback');
    assert.equal(profiling?.recording, true);
    const report = await app.shutdown();
    assert.match(report.profilingChosen[0]?.reason ?? '', /no answer from the collector/);
    assert.deepEqual(
      report.warnings.filter((w) => w === 'ERGOMETER_PROFILING_NOT_CHOSEN'),
      [],
    );
  });
});
