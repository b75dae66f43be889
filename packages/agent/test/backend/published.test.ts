/**
 * mysql2 and mongodb, for which no server is available to the tests: what can
 * be checked without one, through the real driver.
 *
 * - mysql2 publishes `mysql2:query` on a TracingChannel: a query to a host that
 *   accepts the TCP connection and never answers fails after the driver's
 *   connectTimeout, and that wait is the request's db time. The channel has a
 *   subscriber only while a sampled request is in flight.
 * - mongodb publishes command monitoring events: the agent turns monitoring on
 *   when the driver connects, and charges a commandStarted … commandSucceeded
 *   pair to the request that emitted it. The events here are emitted by the test
 *   on the real MongoClient (without a server the driver emits none itself).
 */
import assert from 'node:assert/strict';
import diagnosticsChannel from 'node:diagnostics_channel';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MongoClient } from 'mongodb';
import mysql from 'mysql2';
import { type Agent, start } from '../../src/agent';
import type { WireBatch, WireSample } from '../../src/export/wire';

let agent: Agent;
let dir: string;
let samplesFile: string;
let app: http.Server;
let appUrl: string;
/** Accepts TCP connections and never writes a byte: a database host that does not answer. */
let silent: net.Server;
let silentPort: number;
const silentSockets = new Set<net.Socket>();
const routes = new Map<string, () => Promise<void>>();

function readSamples(): WireSample[] {
  let text = '';
  try {
    text = readFileSync(samplesFile, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((line) => line !== '')
    .flatMap((line) => (JSON.parse(line) as WireBatch).samples);
}

async function requestOne(p: string): Promise<WireSample> {
  const response = await fetch(`${appUrl}${p}`);
  assert.equal(await response.text(), 'ok');
  await agent.flush();
  const sample = readSamples().find((s) => s.endpoint === `GET ${p}`);
  assert.ok(sample !== undefined, `no sample for ${p}`);
  return sample;
}

describe('mysql2 and mongodb without a server', () => {
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-published-'));
    samplesFile = path.join(dir, 'samples.ndjson');
    agent = start({ service: 'published', collector: `file:${samplesFile}`, sampleRate: 1, commit: 'test' });
    silent = net.createServer((socket) => {
      silentSockets.add(socket);
      socket.on('error', () => undefined);
      socket.once('close', () => silentSockets.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    silentPort = (silent.address() as net.AddressInfo).port;
    app = http.createServer(
      agent.http((req, res) => {
        const handler = routes.get(req.url ?? '');
        if (handler === undefined) {
          res.writeHead(404).end();
          return;
        }
        handler().then(
          () => res.end('ok'),
          (error: unknown) => res.writeHead(500).end(String(error)),
        );
      }),
    );
    await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
    appUrl = `http://127.0.0.1:${(app.address() as net.AddressInfo).port}`;
  });

  after(async () => {
    await agent?.shutdown();
    await new Promise<void>((resolve) => (app ? app.close(() => resolve()) : resolve()));
    for (const socket of silentSockets) socket.destroy();
    await new Promise<void>((resolve) => (silent ? silent.close(() => resolve()) : resolve()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('mysql2: the wait of a query on a host that never answers is db time, via mysql2:query', async () => {
    const queryChannel = diagnosticsChannel.tracingChannel('mysql2:query');
    let subscribedDuringRequest = false;
    // The app's own clock: mysql2 starts its connectTimeout when the connection is created,
    // the query (and the agent's interval) a moment later.
    let createdAt = 0;
    let queriedAt = 0;
    let answeredAt = 0;
    routes.set('/mysql2', async () => {
      subscribedDuringRequest = queryChannel.hasSubscribers;
      createdAt = performance.now();
      const connection = mysql.createConnection({ host: '127.0.0.1', port: silentPort, connectTimeout: 60 });
      connection.on('error', () => undefined);
      queriedAt = performance.now();
      const error = await new Promise<Error | null>((resolve) => connection.query('SELECT 1', (e) => resolve(e)));
      answeredAt = performance.now();
      assert.ok(error !== null, 'the query cannot succeed: the host never answers');
      connection.destroy();
    });
    // Subscriptions outlive the last sampled request by a second (instrumentation.ts: toggling them
    // at every gap between requests is what costs at high sample rates).
    const idle = () => new Promise((resolve) => setTimeout(resolve, 1200));
    await idle();
    assert.equal(queryChannel.hasSubscribers, false, 'no subscriber while no sampled request is in flight');
    const sample = await requestOne('/mysql2');
    assert.equal(subscribedDuringRequest, true, 'subscribed while the sampled request ran');
    await idle();
    assert.equal(queryChannel.hasSubscribers, false, 'unsubscribed a second after it ended');
    const db = sample.backend!.db;
    const minMs = 60 - (queriedAt - createdAt) - 1;
    const maxMs = answeredAt - queriedAt + 0.5;
    assert.ok(db >= minMs && db <= maxMs, `db ${db} ms, expected from ${minMs} to ${maxMs} (the connect timeout)`);
    assert.equal(sample.backend!.cache, 0);
    assert.equal(sample.backend!.http, 0);
  });

  test('mongodb: connecting turns command monitoring on, and a command event pair is the request’s db time', async () => {
    const client = new MongoClient(`mongodb://127.0.0.1:${silentPort}/?directConnection=true`, {
      serverSelectionTimeoutMS: 50,
      connectTimeoutMS: 50,
    });
    try {
      assert.equal(client.listenerCount('commandStarted'), 0);
      await client.connect().catch(() => undefined);
      assert.equal(client.options.monitorCommands, true, 'monitoring turned on by the agent');
      assert.equal(client.listenerCount('commandStarted'), 1);
      assert.equal(client.listenerCount('commandSucceeded'), 1);
      assert.equal(client.listenerCount('commandFailed'), 1);

      // A command started outside any request and ending inside one is no one's.
      client.emit('commandStarted', { requestId: 1 } as never);
      routes.set('/mongodb', async () => {
        client.emit('commandSucceeded', { requestId: 1 } as never);
        client.emit('commandStarted', { requestId: 2 } as never);
        await sleep(40);
        client.emit('commandSucceeded', { requestId: 2 } as never);
        client.emit('commandStarted', { requestId: 3 } as never);
        await sleep(20);
        client.emit('commandFailed', { requestId: 3 } as never);
      });
      const sample = await requestOne('/mongodb');
      // 40 + 20 ms of timers between the events (each may fire ~1 ms early by performance.now()),
      // and never more than the request itself.
      const db = sample.backend!.db;
      assert.ok(db >= 58 && db <= sample.wallMs, `db ${db} ms, expected from 58 to the request's ${sample.wallMs}`);
    } finally {
      await client.close();
    }
  });
});
