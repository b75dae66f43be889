/**
 * Sampling as a user configures it: the default rate, per-endpoint overrides,
 * and the promise that the accounting hooks are off when nothing is sampled.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { Agent } from '../../src/agent';
import type { WireBatch, WireSample } from '../../src/export/wire';
import { type AgentOptions, resolveOptions } from '../../src/options';

/** Serves `paths` through a plain node:http server instrumented by a fresh agent, returns the samples it wrote. */
async function serve(options: AgentOptions, paths: string[], inspect?: (agent: Agent) => void): Promise<WireSample[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-sampling-'));
  const file = path.join(dir, 'samples.ndjson');
  const agent = new Agent(resolveOptions({ service: 's', collector: `file:${file}`, commit: 'c', ...options }));
  const server = http.createServer(
    agent.http((_req, res) => {
      agent.flag('seen', 'yes');
      setTimeout(() => res.end('ok'), 1);
    }),
  );
  try {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    for (const p of paths) {
      const response = await fetch(`http://127.0.0.1:${port}${p}`);
      assert.equal(await response.text(), 'ok');
    }
    inspect?.(agent);
    await agent.shutdown();
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      // No batch at all: nothing was sampled.
    }
    return text
      .split('\n')
      .filter((line) => line !== '')
      .flatMap((line) => (JSON.parse(line) as WireBatch).samples);
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('sampleRate 0 measures nothing', async () => {
  const samples = await serve({ sampleRate: 0 }, ['/a', '/b', '/c']);
  assert.equal(samples.length, 0);
});

test('sampleRate 1 measures every request, each standing for one', async () => {
  const samples = await serve({ sampleRate: 1 }, ['/a', '/users/42', '/a']);
  assert.deepEqual(
    samples.map((s) => [s.endpoint, s.weight, s.flags?.seen]),
    [
      ['GET /a', 1, 'yes'],
      ['GET /users/:id', 1, 'yes'],
      ['GET /a', 1, 'yes'],
    ],
  );
  // (wallMs can be under the 1 ms timer: libuv fires timers against its cached loop time.)
  for (const s of samples) assert.ok(s.cost > 0 && s.wallMs > 0, JSON.stringify(s));
});

test('per-endpoint rates replace the default for their endpoints, and set the weight', async () => {
  const paths = Array.from({ length: 30 }, (_, i) => (i % 3 === 0 ? '/health' : i % 3 === 1 ? '/feed/7' : '/other'));
  // Default 0: only the endpoint with an override is measured.
  const only = await serve({ sampleRate: 0, endpointSampleRates: { 'GET /feed/:id': 1 } }, paths);
  assert.equal(only.length, 10);
  assert.ok(only.every((s) => s.endpoint === 'GET /feed/:id' && s.weight === 1));
  // Default 1 with /health switched off.
  const noHealth = await serve(
    { sampleRate: 1, endpointSampleRates: 'GET /health=0' as unknown as Record<string, number> },
    paths,
  );
  assert.equal(noHealth.length, 20);
  assert.ok(noHealth.every((s) => s.endpoint !== 'GET /health'));
  // A lower rate for one endpoint: thinned to it, weighted by it.
  const thinned = await serve({ sampleRate: 1, endpointSampleRates: { 'GET /other': 0.5 } }, paths);
  const others = thinned.filter((s) => s.endpoint === 'GET /other');
  assert.ok(others.every((s) => s.weight === 2));
  assert.ok(others.length < 10, `expected thinning, kept ${others.length} of 10`);
});

test('the accounting hooks are off once no sampled request is in flight', async () => {
  let active = -1;
  await serve({ sampleRate: 1 }, ['/a', '/b'], (agent) => {
    active = (agent as unknown as { attributor: { activeRequests: number } }).attributor.activeRequests;
  });
  assert.equal(active, 0);
});
