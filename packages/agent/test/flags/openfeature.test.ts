/**
 * agent.openFeatureHook() with the real OpenFeature server SDK and its InMemoryProvider: every flag
 * evaluated in a request lands on that request's sample, also when two requests interleave.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { InMemoryProvider, OpenFeature } from '@openfeature/server-sdk';
import type { WireSample } from '../../src/export/wire';
import { FileAgent } from '../support/file-agent';

after(async () => {
  await OpenFeature.close();
});

test('flags evaluated in two interleaved requests land on the right samples', async (t) => {
  const fileAgent = new FileAgent({ sampleRate: 1 });
  t.after(() => fileAgent.remove());
  const { agent } = fileAgent;
  await OpenFeature.setProviderAndWait(
    new InMemoryProvider({
      ranker: {
        variants: { fast: 'v2', classic: 'v1' },
        defaultVariant: 'classic',
        disabled: false,
        contextEvaluator: (ctx) => (ctx.targetingKey === 'alice' ? 'fast' : 'classic'),
      },
      dark_mode: { variants: { on: true, off: false }, defaultVariant: 'on', disabled: false },
      limits: { variants: { big: { max: 100 } }, defaultVariant: 'big', disabled: false },
    }),
  );
  OpenFeature.addHooks(agent.openFeatureHook());
  const client = OpenFeature.getClient();

  // Request "alice" evaluates a flag, then waits until "bob" has evaluated his, then evaluates more.
  let bobEvaluated!: () => void;
  const bobDone = new Promise<void>((resolve) => {
    bobEvaluated = resolve;
  });
  const server = http.createServer(
    agent.http(async (req, res) => {
      const user = new URL(req.url ?? '/', 'http://x').searchParams.get('user') ?? '';
      agent.setRoute(`/${user}`);
      const context = { targetingKey: user };
      await client.getStringValue('ranker', 'none', context);
      if (user === 'alice') {
        await bobDone;
        await client.getBooleanValue('dark_mode', false, context);
        await client.getObjectValue('limits', {}, context);
      } else {
        await client.getNumberValue('missing_flag', 7, context); // FLAG_NOT_FOUND: the default is what ran
        bobEvaluated();
      }
      res.end(user);
    }),
  );
  t.after(() => server.close());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const [alice, bob] = await Promise.all([
    fetch(`http://127.0.0.1:${port}/?user=alice`).then((r) => r.text()),
    fetch(`http://127.0.0.1:${port}/?user=bob`).then((r) => r.text()),
  ]);
  assert.deepEqual([alice, bob], ['alice', 'bob']);
  // Outside any request: nothing is recorded, nothing breaks.
  assert.equal(await client.getBooleanValue('dark_mode', false), true);

  const samples = (await fileAgent.batches()).flatMap((b) => b.samples);
  const byEndpoint = new Map<string, WireSample>(samples.map((s) => [s.endpoint, s]));
  assert.equal(samples.length, 2);
  assert.deepEqual(byEndpoint.get('GET /alice')?.flags, { ranker: 'fast', dark_mode: 'on', limits: 'big' });
  assert.deepEqual(byEndpoint.get('GET /bob')?.flags, { ranker: 'classic', missing_flag: '7' });
});

test('the cap per request holds for hook-recorded flags, and what is over it is counted', async (t) => {
  const fileAgent = new FileAgent({ sampleRate: 1 });
  t.after(() => fileAgent.remove());
  const { agent } = fileAgent;
  const flags = Object.fromEntries(
    Array.from({ length: 70 }, (_, i) => [`f${i}`, { variants: { on: true }, defaultVariant: 'on', disabled: false }]),
  );
  await OpenFeature.setProviderAndWait(new InMemoryProvider(flags));
  OpenFeature.clearHooks();
  OpenFeature.addHooks(agent.openFeatureHook());
  const client = OpenFeature.getClient();
  const server = http.createServer(
    agent.http(async (_req, res) => {
      for (let i = 0; i < 70; i++) await client.getBooleanValue(`f${i}`, false);
      res.end('ok');
    }),
  );
  t.after(() => server.close());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), 'ok');
  const [sample] = (await fileAgent.batches()).flatMap((b) => b.samples);
  assert.equal(Object.keys(sample?.flags ?? {}).length, 64);
  assert.equal(sample?.flagsDropped, 6);
});
