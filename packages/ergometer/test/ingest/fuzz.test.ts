/**
 * Fuzzing POST /v1/samples with fast-check against a real collector on a real DuckDB file:
 * malformed JSON, wrong types, huge numbers, NaN/∞ (as strings and as raw `1e999`), unicode and
 * control characters, 10 MB strings, gzip bombs, deep nesting. For every invalid input: a 4xx
 * with an ERGOMETER_* code, never a 5xx or a dropped connection; afterwards no row from any of
 * them is in the store, /health answers and a valid batch is still accepted.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { encodeColumns } from '@ergometer/agent/wire';
import fc from 'fast-check';
import { startTestCollector, type TestCollector } from '../server/harness';
import { wireBatch } from './support';

/** Posts one invalid body and checks the answer is a 4xx carrying an error code. */
async function expectRefused(c: TestCollector, body: Buffer | string, gzip = false, label = ''): Promise<void> {
  const answer = await c.post('/v1/samples', body, gzip ? { headers: { 'content-encoding': 'gzip' } } : {});
  assert.ok(
    answer.status >= 400 && answer.status < 500,
    `${label}: status ${answer.status}: ${answer.text.slice(0, 300)}`,
  );
  const code = (answer.json as { error?: { code?: string } } | undefined)?.error?.code ?? '';
  assert.match(code, /^ERGOMETER_[A-Z_]+$/, `${label}: ${answer.text.slice(0, 300)}`);
}

const MARK = 424242.4242;

/** Values that no numeric field of a sample accepts, including raw-text ones JSON.stringify cannot write. */
const badNumber = fc.oneof(
  fc.constantFrom<unknown>('NaN', 'Infinity', '-Infinity', '1e999', null, true, [], {}, '12'),
  fc.double({ min: -1e308, max: -1e-300, noNaN: true }),
  fc.constantFrom<unknown>(
    { raw: '1e999' },
    { raw: '-1e999' },
    { raw: 'NaN' },
    { raw: 'Infinity' },
    { raw: '0x10' },
    { raw: '1e400' },
  ),
);

/** Values that no name field (endpoint, service…) accepts. */
const badName = fc.oneof(
  fc.constantFrom<unknown>('', null, 42, [], {}, true),
  fc
    .string({ unit: fc.integer({ min: 0, max: 0x1f }).map((code) => String.fromCharCode(code)), minLength: 1 })
    .map((s) => `GET /${s}`),
  fc.constantFrom('GET /\ud800', 'GET /\udfff x', '\u007f'),
  fc.integer({ min: 257, max: 5000 }).chain((n) => fc.constant('é'.repeat(n))),
);

/** JSON text of `value` where `{raw: "..."}` placeholders become that raw text (1e999, NaN…). */
function toJsonText(value: unknown): string {
  const raws: string[] = [];
  const text = JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'object' && v !== null && 'raw' in v && Object.keys(v).length === 1) {
      raws.push((v as { raw: string }).raw);
      return MARK + raws.length;
    }
    return v;
  });
  return raws.reduce((out, raw, i) => out.replace(String(MARK + i + 1), raw), text);
}

test('fuzzing POST /v1/samples: every invalid input gets a 4xx, none is stored, the server keeps answering', {
  timeout: 300_000,
}, async (t) => {
  const c = await startTestCollector(t);
  let acceptedSamples = 0;
  const accept = async (n: number): Promise<void> => {
    const answer = await c.post('/v1/samples', wireBatch(n));
    assert.equal(answer.status, 200, answer.text);
    acceptedSamples += n;
  };
  await accept(3);

  await t.test('arbitrary bytes and strings', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ unit: 'binary' }),
          fc.uint8Array({ maxLength: 2000 }).map((a) => Buffer.from(a)),
        ),
        async (body) => expectRefused(c, typeof body === 'string' ? body : body, false, 'bytes'),
      ),
      { numRuns: 150 },
    );
  });

  await t.test('arbitrary JSON values, plain and gzipped', async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 6 }), fc.boolean(), async (value, gzip) => {
        const text = JSON.stringify(value) ?? 'null';
        await expectRefused(c, gzip ? gzipSync(text) : text, gzip, 'json');
      }),
      { numRuns: 150 },
    );
  });

  await t.test('a valid batch with one field broken', async () => {
    const sampleNumbers = ['ts', 'status', 'cost', 'wallMs', 'weight'];
    const sampleNames = ['endpoint'];
    const batchNames = ['batchId', 'service', 'commit'];
    const mutation = fc.oneof(
      fc.record({ where: fc.constant('sample'), field: fc.constantFrom(...sampleNumbers), value: badNumber }),
      fc.record({ where: fc.constant('sample'), field: fc.constantFrom(...sampleNames), value: badName }),
      fc.record({ where: fc.constant('batch'), field: fc.constantFrom(...batchNames), value: badName }),
      fc.record({
        where: fc.constant('batch'),
        field: fc.constant('v'),
        value: fc.oneof(fc.integer(), fc.string(), fc.constant(null)).filter((v) => v !== 1),
      }),
      fc.record({
        where: fc.constant('batch'),
        field: fc.constant('metric'),
        value: fc.string().filter((v) => v !== 'instructions' && v !== 'cpu_ns'),
      }),
      // A variant may be any short string (even "NaN" or ""), so only non-strings and bad strings here.
      fc.record({
        where: fc.constant('flags'),
        field: fc.string({ maxLength: 10 }),
        value: badName.filter((v) => v !== ''),
      }),
    );
    await fc.assert(
      fc.asyncProperty(
        mutation,
        fc.integer({ min: 1, max: 20 }),
        fc.boolean(),
        async ({ where, field, value }, n, gzip) => {
          const batch = wireBatch(n) as unknown as Record<string, unknown> & {
            samples: Array<Record<string, unknown>>;
          };
          const sample = batch.samples[n - 1] as Record<string, unknown>;
          if (where === 'sample') sample[field] = value;
          else if (where === 'flags') sample.flags = { [field]: value };
          else batch[field] = value;
          const text = toJsonText(batch);
          await expectRefused(
            c,
            gzip ? gzipSync(text) : text,
            gzip,
            `${where}.${field}=${text.length > 200 ? '…' : JSON.stringify(value)}`,
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  await t.test('a valid wire format 2 batch with one column value or dictionary entry broken', async () => {
    const columns = ['ts', 'endpoint', 'status', 'cost', 'wallMs', 'db', 'cache', 'http', 'flags', 'weight'];
    const mutation = fc.oneof(
      fc.record({ where: fc.constant('column'), field: fc.constantFrom(...columns), value: badNumber }),
      fc.record({
        where: fc.constant('column'),
        field: fc.constant('user'),
        value: fc.constantFrom<unknown>(null, 7, true, [], {}),
      }),
      fc.record({ where: fc.constant('column'), field: fc.constantFrom('endpoint', 'flags'), value: fc.integer() }),
      fc.record({ where: fc.constant('endpoints'), field: fc.constant(''), value: badName }),
      fc.record({
        where: fc.constant('flagSets'),
        field: fc.string({ maxLength: 10 }),
        value: badName.filter((v) => v !== ''),
      }),
      fc.record({ where: fc.constant('length'), field: fc.constantFrom(...columns, 'user'), value: fc.constant(0) }),
    );
    await fc.assert(
      fc.asyncProperty(mutation, fc.integer({ min: 1, max: 20 }), async ({ where, field, value }, n) => {
        const batch = wireBatch(n, { endpoints: ['GET /a', 'GET /b', 'GET /c'] });
        const cols = encodeColumns(batch.samples.map((s) => ({ weight: 1, ...s }))) as unknown as Record<
          string,
          unknown[]
        >;
        const last = n - 1;
        if (where === 'column') {
          // An index that points somewhere is valid: only out-of-range ones are a mutation.
          const inRange = field === 'endpoint' ? [0, cols.endpoints?.length] : [-1, cols.flagSets?.length];
          const [lo, hi] = inRange as [number, number];
          if (
            typeof value === 'number' &&
            Number.isInteger(value) &&
            (field === 'endpoint' || field === 'flags') &&
            value >= lo &&
            value < hi
          )
            return;
          (cols[field] as unknown[])[last] = value;
        } else if (where === 'endpoints') (cols.endpoints as unknown[])[cols.endpoints?.length === 1 ? 0 : 1] = value;
        else if (where === 'flagSets') (cols.flagSets as unknown[])[0] = { [field]: value };
        else (cols[field] as unknown[]).push(0);
        const text = toJsonText({ ...batch, v: 2, samples: cols });
        await expectRefused(c, gzipSync(text), true, `v2 ${where}.${field}=${JSON.stringify(value)}`);
      }),
      { numRuns: 200 },
    );
  });

  await t.test('deep nesting, at the top and inside an unknown field', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 9, max: 200_000 }),
        fc.constantFrom('[', '{"a":'),
        fc.boolean(),
        async (depth, open, inside) => {
          const close = open === '[' ? ']' : '}';
          const nested = `${open.repeat(depth)}1${close.repeat(depth)}`;
          const body = inside ? JSON.stringify(wireBatch(1)).replace(/}$/, `,"extra":${nested}}`) : nested;
          await expectRefused(c, body, false, `depth ${depth}`);
        },
      ),
      { numRuns: 30 },
    );
  });

  await t.test('10 MB strings, plain (413) and gzipped (400 after inflating within the limit)', async () => {
    const huge = 'x'.repeat(10 * 1024 * 1024);
    for (const field of ['endpoint', 'service', 'unknownField']) {
      const batch = wireBatch(1) as unknown as Record<string, unknown> & { samples: Array<Record<string, unknown>> };
      if (field === 'endpoint') (batch.samples[0] as Record<string, unknown>).endpoint = huge;
      else batch[field] = huge;
      const text = JSON.stringify(batch);
      await expectRefused(c, text, false, `10MB ${field} plain`);
      if (field !== 'unknownField') await expectRefused(c, gzipSync(text), true, `10MB ${field} gzip`);
    }
  });

  await t.test('gzip bombs and corrupt gzip', async () => {
    // 100 MB of zeros is ~100 KB on the wire; the collector stops inflating at 32 MB.
    const bomb = gzipSync(Buffer.alloc(100 * 1024 * 1024));
    await expectRefused(c, bomb, true, 'bomb');
    const validThenBomb = gzipSync(
      Buffer.concat([Buffer.from(JSON.stringify(wireBatch(1))), Buffer.alloc(64 * 1024 * 1024, 0x20)]),
    );
    await expectRefused(c, validThenBomb, true, 'valid prefix then bomb');
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 500 }), async (bytes) => {
        const good = gzipSync(JSON.stringify(wireBatch(2)));
        // Keep the gzip header, corrupt what follows.
        const corrupt = Buffer.concat([good.subarray(0, 10), Buffer.from(bytes)]);
        await expectRefused(c, corrupt, true, 'corrupt gzip');
      }),
      { numRuns: 50 },
    );
  });

  await t.test('valid batches with arbitrary unicode names are stored and read back unchanged', async () => {
    // Any code point but C0 controls and DEL, surrogate pairs included (fc 'grapheme' units are well formed).
    const name = fc
      .string({ unit: 'grapheme', minLength: 1, maxLength: 40 })
      .filter((s) => s.length <= 128 && [...s].every((ch) => (ch.codePointAt(0) as number) > 0x1f && ch !== '\u007f'));
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(name, { minLength: 1, maxLength: 4 }), fc.boolean(), async (endpoints, gzip) => {
        const service = `unicode-${acceptedSamples}`;
        const batch = wireBatch(endpoints.length, {
          service,
          endpoints,
          flags: { [endpoints[0] as string]: endpoints.at(-1) as string },
        });
        const answer = await c.post('/v1/samples', batch, { gzip });
        assert.equal(answer.status, 200, answer.text);
        acceptedSamples += endpoints.length;
        const read = await c.get(`/v1/endpoints?service=${encodeURIComponent(service)}`);
        assert.deepEqual(
          ((read.json as Array<{ endpoint: string }>) ?? []).map((e) => e.endpoint).sort(),
          [...endpoints].sort(),
        );
      }),
      { numRuns: 40 },
    );
  });

  await accept(5);
  assert.equal(await c.store.sampleCount(), acceptedSamples);
  const health = await fetch(`${c.url}/health`);
  assert.equal(health.status, 200);
  const metrics = await (await fetch(`${c.url}/metrics`)).text();
  assert.match(metrics, /ergometer_requests_rejected_total\{reason="bad_batch"\} [1-9]\d*/);
  assert.match(metrics, /ergometer_requests_rejected_total\{reason="too_large"\} [1-9]\d*/);
});
