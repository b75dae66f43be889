import assert from 'node:assert/strict';
import type { BatchHeader } from '../../../src/export/batcher';
import type { Exporter, WireBatch, WireSample } from '../../../src/export/wire';
import { AGENT_VERSION } from '../../../src/version';

/** The header the agent puts on every batch (agent.ts builds it the same way). */
export const HEADER: BatchHeader = {
  v: 1,
  service: 'api',
  host: 'web-7',
  region: 'eu-1',
  commit: 'abc123',
  hostClass: 'Intel Xeon Platinum 8375C x2',
  metric: 'cpu_ns',
  agent: { version: AGENT_VERSION, runtime: `node ${process.version}`, counter: 'thread-cputime' },
};

/** Sample number `i`: its `ts` is `i`, so tests can tell which samples arrived and in what order. */
export function sample(i: number, extra: Partial<WireSample> = {}): WireSample {
  return { ts: i, endpoint: 'GET /feed/:id', status: 200, cost: 1000 + i, wallMs: 1.5, weight: 100, ...extra };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function assertKeys(value: unknown, required: string[], optional: string[], where: string): Record<string, unknown> {
  assert.ok(isRecord(value), `${where}: not an object`);
  for (const key of required) assert.ok(key in value, `${where}: ${key} is missing`);
  for (const key of Object.keys(value)) {
    assert.ok(required.includes(key) || optional.includes(key), `${where}: unexpected field ${key}`);
  }
  return value;
}

const isFiniteNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);

/**
 * Asserts that `value` (parsed JSON) is a batch in wire format v1 (SPEC §4, src/export/wire.ts), field by
 * field, with `header`'s values, and returns it typed.
 */
export function assertWireBatch(value: unknown, header: BatchHeader = HEADER): WireBatch {
  const batch = assertKeys(
    value,
    [
      'v',
      'batchId',
      'service',
      'host',
      'region',
      'commit',
      'hostClass',
      'metric',
      'agent',
      'samples',
      'counts',
      'users',
    ],
    [],
    'batch',
  );
  assert.equal(batch.v, 1);
  assert.match(String(batch.batchId), UUID, 'batchId');
  for (const key of ['service', 'host', 'region', 'commit', 'hostClass', 'metric'] as const) {
    assert.equal(batch[key], header[key], key);
  }
  assert.ok(batch.metric === 'instructions' || batch.metric === 'cpu_ns', 'metric');

  const agent = assertKeys(batch.agent, ['version', 'runtime', 'counter', 'dropped'], [], 'agent');
  assert.equal(agent.version, header.agent.version);
  assert.equal(agent.runtime, header.agent.runtime);
  assert.equal(agent.counter, header.agent.counter);
  assert.ok(Number.isSafeInteger(agent.dropped) && (agent.dropped as number) >= 0, `agent.dropped ${agent.dropped}`);

  assert.ok(Array.isArray(batch.samples), 'samples');
  for (const [i, s] of batch.samples.entries()) {
    const where = `samples[${i}]`;
    const fields = assertKeys(
      s,
      ['ts', 'endpoint', 'status', 'cost', 'wallMs', 'weight'],
      ['backend', 'flags', 'user', 'aborted', 'flagsDropped'],
      where,
    );
    assert.ok(isFiniteNumber(fields.ts), `${where}.ts`);
    assert.equal(typeof fields.endpoint, 'string', `${where}.endpoint`);
    assert.ok(Number.isInteger(fields.status), `${where}.status`);
    assert.ok(isFiniteNumber(fields.cost) && fields.cost >= 0, `${where}.cost`);
    assert.ok(isFiniteNumber(fields.wallMs) && fields.wallMs >= 0, `${where}.wallMs`);
    assert.ok(isFiniteNumber(fields.weight) && fields.weight >= 1, `${where}.weight`);
    if (fields.backend !== undefined) {
      const backend = assertKeys(fields.backend, ['db', 'cache', 'http'], [], `${where}.backend`);
      for (const v of Object.values(backend)) assert.ok(isFiniteNumber(v) && v >= 0, `${where}.backend`);
    }
    if (fields.flags !== undefined) {
      assert.ok(isRecord(fields.flags), `${where}.flags`);
      for (const v of Object.values(fields.flags)) assert.equal(typeof v, 'string', `${where}.flags`);
    }
    if (fields.user !== undefined) assert.equal(typeof fields.user, 'string', `${where}.user`);
    if (fields.aborted !== undefined) assert.equal(fields.aborted, true, `${where}.aborted`);
    if (fields.flagsDropped !== undefined) assert.ok(Number.isInteger(fields.flagsDropped), `${where}.flagsDropped`);
  }
  assert.ok(Array.isArray(batch.counts), 'counts');
  for (const c of batch.counts) {
    const count = assertKeys(c, ['minute', 'endpoint', 'requests'], [], 'counts[]');
    assert.ok(isFiniteNumber(count.minute) && isFiniteNumber(count.requests) && typeof count.endpoint === 'string');
  }
  assert.ok(Array.isArray(batch.users), 'users');
  for (const u of batch.users) {
    const users = assertKeys(u, ['minute', 'sketch'], [], 'users[]');
    assert.ok(isFiniteNumber(users.minute) && typeof users.sketch === 'string');
  }
  return value as WireBatch;
}

/**
 * An exporter the test steers: records every batch handed to it, and settles
 * each send as `behaviour` says at the time of the call.
 */
export class ScriptedExporter implements Exporter {
  /** Batches whose send resolved. */
  readonly delivered: WireBatch[] = [];
  /** Every batch handed to send(), whatever became of it. */
  readonly handed: WireBatch[] = [];
  behaviour: 'deliver' | 'reject' | 'throw' | 'hang' = 'deliver';
  private readonly hung: (() => void)[] = [];

  send(batch: WireBatch): Promise<void> {
    this.handed.push(batch);
    switch (this.behaviour) {
      case 'deliver':
        this.delivered.push(batch);
        return Promise.resolve();
      case 'reject':
        return Promise.reject(new Error('collector down'));
      case 'throw':
        throw new Error('exporter bug');
      case 'hang':
        return new Promise<void>((resolve) =>
          this.hung.push(() => {
            this.delivered.push(batch);
            resolve();
          }),
        );
    }
  }

  /** Delivers every hung batch and stops hanging. */
  release(): void {
    this.behaviour = 'deliver';
    for (const deliver of this.hung.splice(0)) deliver();
  }

  sendProfile(): Promise<void> {
    return Promise.reject(new Error('the scripted exporter takes batches only'));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  samplesHanded(): number {
    return this.handed.reduce((n, b) => n + b.samples.length, 0);
  }
}
