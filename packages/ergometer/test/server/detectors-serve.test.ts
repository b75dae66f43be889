import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import type { Alert } from '../../src/detect/alert';
import { HOUR, scenarioBatches, toWire } from '../detect/scenario';

const CLI = path.join(__dirname, '..', '..', 'src', 'cli', 'main.js');
const INGEST = 'ingest-token-for-detectors';
const READ = 'read-token-for-detectors';

/**
 * The whole loop through the real parts: wire batches POSTed to `ergometer serve` (DuckDB), the
 * detectors on their schedule, the alert delivered once to a webhook, and the read API.
 */
describe('serve runs the detectors and delivers alerts', () => {
  let dir: string;
  let serve: ChildProcess;
  let url: string;
  let hook: Server;
  let output = '';
  const delivered: Alert[][] = [];

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'ergometer-serve-detect-'));
    hook = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        delivered.push((JSON.parse(Buffer.concat(chunks).toString()) as { alerts: Alert[] }).alerts);
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
    const hookUrl = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/hook`;
    serve = spawn(
      process.execPath,
      [
        CLI,
        'serve',
        '--db',
        path.join(dir, 'ergometer.duckdb'),
        '--port',
        '0',
        '--ingest-token',
        INGEST,
        '--read-token',
        READ,
        '--detect-interval',
        '1',
        '--webhook',
        hookUrl,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    serve.stdout?.on('data', (c: Buffer) => {
      output += c.toString();
    });
    serve.stderr?.on('data', (c: Buffer) => {
      output += c.toString();
    });
    url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve did not start:\n${output}`)), 20_000);
      const check = () => {
        const match = /listening on (http:\/\/[^\s]+)/.exec(output);
        if (match?.[1]) {
          clearTimeout(timer);
          resolve(match[1]);
        } else setTimeout(check, 50);
      };
      check();
    });
  });

  after(async () => {
    serve.kill('SIGTERM');
    await new Promise((resolve) => serve.once('exit', resolve));
    await new Promise<void>((resolve) => hook.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('a regression POSTed as wire batches becomes one alert: webhook, /v1/alerts, /v1/compare', async () => {
    const t0 = Date.now() - 8 * HOUR;
    const endpoints = { 'GET /feed/:id': 1_000_000, 'GET /search': 2_000_000 };
    const batches = scenarioBatches(
      'shop',
      [
        { commit: 'v1', from: t0, to: t0 + 4 * HOUR, endpoints, perHour: 3000, shareB: 0.3 },
        {
          commit: 'v2',
          from: t0 + 4 * HOUR,
          to: t0 + 8 * HOUR,
          endpoints: { ...endpoints, 'GET /search': 2_200_000 },
          perHour: 3000,
          shareB: 0.3,
        },
      ],
      21,
    );
    for (const batch of batches) {
      const response = await fetch(`${url}/v1/samples`, {
        method: 'POST',
        headers: { authorization: `Bearer ${INGEST}`, 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body: gzipSync(JSON.stringify(toWire(batch))),
      });
      assert.equal(response.status, 200, await response.text());
    }
    const deadline = Date.now() + 60_000;
    while (delivered.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.equal(delivered.length, 1, `no alert reached the webhook:\n${output}`);
    const [alert] = delivered[0] ?? [];
    assert.equal(alert?.endpoint, 'GET /search');
    assert.equal(alert?.candidate.commit, 'v2');
    assert.ok(alert && alert.ci[0] < 10 && alert.ci[1] > 10, `${alert?.ci}`);
    // Later runs find the same regression again; the webhook hears about it once.
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(delivered.length, 1);
    assert.match(output, /ergometer alert \[rollout\] shop GET \/search: \+/);

    const get = async (route: string, token = READ) => {
      const response = await fetch(`${url}${route}`, { headers: { authorization: `Bearer ${token}` } });
      return { status: response.status, json: (await response.json()) as unknown };
    };
    const alerts = await get('/v1/alerts?service=shop');
    assert.equal(alerts.status, 200);
    const list = alerts.json as Array<Alert & { status: string }>;
    assert.equal(list.length, 1);
    assert.equal(list[0]?.status, 'open');
    assert.equal(list[0]?.id, alert?.id);
    assert.equal((await get('/v1/alerts?service=shop', INGEST)).status, 401, 'the ingest token cannot read');
    const compare = await get('/v1/compare?service=shop&base=v1&head=v2');
    assert.equal(compare.status, 200);
    const rows = compare.json as Array<{ endpoint: string; changePct: number; ci: [number, number] }>;
    const feed = rows.find((r) => r.endpoint === 'GET /feed/:id');
    assert.ok(feed && feed.ci[0] < 0 && feed.ci[1] > 0, JSON.stringify(feed));
    assert.equal((await get('/v1/alerts?status=bogus')).status, 400);
    const saved = JSON.parse(readFileSync(path.join(dir, 'ergometer.alerts.json'), 'utf8')) as { alerts: unknown[] };
    assert.equal(saved.alerts.length, 1);
  });
});
