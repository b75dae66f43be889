/**
 * Exact attribution, independent of the machine: the agent is driven by a
 * virtual counter that advances only when known work is done — the role a
 * hardware instruction counter plays, without its noise. Every request then
 * must be charged exactly its own work, to the unit, while 64 requests
 * interleave across the synchronous handler, `await`, timers, setImmediate,
 * stream callbacks, socket callbacks and callbacks nested inside them
 * (AsyncResource.runInAsyncScope), and while the load generator and a
 * background timer do work on the same thread outside any request.
 *
 * Any slice charged to the wrong owner shows up as a mismatch. (The real-counter
 * test beside this one checks the same thing on real CPU time, where the
 * machine adds noise.)
 */
import assert from 'node:assert/strict';
import { AsyncResource } from 'node:async_hooks';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, pipeline, Readable, Transform, Writable } from 'node:stream';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Counter } from '@ergometer/counters';
import { Agent } from '../../src/agent';
import type { WireBatch } from '../../src/export/wire';
import { resolveOptions } from '../../src/options';

let units = 0;
const virtualCounter: Counter = {
  metric: 'instructions',
  source: 'instructions',
  rdpmc: true,
  fallbacks: [],
  read: () => units,
  close() {},
};

/** Known work: advances the virtual counter and the request's own tally. */
function work(amount: number, tally?: { known: number }): void {
  units += amount;
  if (tally) tally.known += amount;
}

type Handler = (tally: { known: number }, res: http.ServerResponse, id: number) => Promise<void> | void;

const handlers: Record<string, Handler> = {
  sync(tally, res) {
    work(300, tally);
    res.end('sync');
  },
  awaits: async (tally, res) => {
    work(100, tally);
    await Promise.resolve();
    work(110, tally);
    await sleep(1);
    work(120, tally);
    await new Promise((resolve) => setImmediate(resolve));
    work(130, tally);
    res.end('awaits');
  },
  streams: async (tally, res) => {
    await new Promise<void>((resolve, reject) => {
      pipeline(
        Readable.from(['a', 'b', 'c']),
        new Transform({
          transform(chunk, _encoding, callback) {
            work(50, tally);
            setImmediate(() => callback(null, chunk));
          },
        }),
        new Writable({
          write(_chunk, _encoding, callback) {
            work(7, tally);
            callback();
          },
        }),
        (error) => (error ? reject(error) : resolve()),
      );
    });
    // A streamed response: every chunk written from a timer.
    for (let i = 0; i < 3; i++) {
      await sleep(1);
      work(11, tally);
      res.write(`chunk${i}\n`);
    }
    res.end();
  },
  sockets: async (tally, res) => {
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(echoPort, '127.0.0.1');
      let rounds = 0;
      socket.on('error', reject);
      socket.on('connect', () => {
        work(13, tally);
        socket.write('ping');
      });
      socket.on('data', () => {
        work(17, tally);
        if (++rounds === 2) socket.end(() => resolve());
        else socket.write('ping');
      });
    });
    setTimeout(() => {
      work(19, tally);
      res.end('sockets');
    }, 1);
  },
};
// A resource created at start-up, outside any request, as connection pools and
// drivers keep: running a callback in its scope from inside a request nests one
// callback in another (async_hooks before/after fire synchronously).
const pool = new AsyncResource('TEST_POOL');
handlers.nested = async (tally, res) => {
  work(29, tally);
  pool.runInAsyncScope(() => work(1000)); // the pool's own work: no request's
  work(31, tally); // back in the request after the nested callback
  await Promise.resolve();
  pool.runInAsyncScope(() => work(1000));
  work(37, tally);
  res.end('nested');
};
const kinds = Object.keys(handlers);

// Outside any request: the echo server's own callbacks do work too.
let echoPort = 0;
const echo = net.createServer((socket) => {
  const relay = new PassThrough();
  socket.pipe(relay).on('data', (chunk: Buffer) => {
    work(3);
    socket.write(chunk);
  });
});

test('every request is charged exactly its own work under concurrency 64', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-exact-'));
  const file = path.join(dir, 'samples.ndjson');
  const agent = new Agent(
    resolveOptions({
      service: 'exact',
      collector: `file:${file}`,
      sampleRate: 1,
      commit: 'test',
      flushIntervalMs: 100,
    }),
    { counter: virtualCounter },
  );
  const knownById = new Map<number, number>();
  const server = http.createServer(
    agent.http((req, res) => {
      const id = Number(req.headers['x-id']);
      const kind = String(req.headers['x-kind']);
      const tally = { known: 0 };
      agent.flag('id', String(id));
      res.on('finish', () => knownById.set(id, tally.known));
      const handler = handlers[kind];
      if (handler === undefined) {
        res.statusCode = 404;
        res.end();
        return;
      }
      void handler(tally, res, id);
    }),
  );
  // Background work on the same thread, in no request.
  const background = setInterval(() => work(23), 1);
  try {
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    echoPort = (echo.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;

    const total = 800;
    const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    let next = 0;
    const client = async () => {
      while (next < total) {
        const id = next++;
        await new Promise<void>((resolve, reject) => {
          http
            .get(
              {
                host: '127.0.0.1',
                port,
                path: '/',
                agent: httpAgent,
                headers: { 'x-id': id, 'x-kind': kinds[id % kinds.length] },
              },
              (res) => {
                res.on('data', () => work(5)); // the load generator's own work: nobody's
                res.on('end', resolve);
              },
            )
            .on('error', reject);
        });
      }
    };
    await Promise.all(Array.from({ length: 64 }, client));
    httpAgent.destroy();
    await agent.shutdown();

    const samples = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .flatMap((line) => (JSON.parse(line) as WireBatch).samples);
    assert.equal(samples.length, total, 'one sample per request at sampleRate 1');
    const mismatches: string[] = [];
    for (const sample of samples) {
      const id = Number(sample.flags?.id);
      const known = knownById.get(id);
      if (sample.cost !== known)
        mismatches.push(`#${id} (${kinds[id % kinds.length]}): charged ${sample.cost}, did ${known}`);
    }
    assert.deepEqual(mismatches.slice(0, 10), [], `${mismatches.length} of ${samples.length} requests mischarged`);
  } finally {
    clearInterval(background);
    server.close();
    echo.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
