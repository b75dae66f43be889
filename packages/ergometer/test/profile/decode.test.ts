import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { Profile, StringTable, ValueType } from 'pprof-format';
import { ErgometerError } from '../../src/errors';
import { DEFAULT_PROFILE_LIMITS, decodeProfile, NO_REQUEST, summarizeProfile } from '../../src/profile/decode';
import { buildPprof, type Frame } from './pprof';

const mw: Frame = { name: 'middleware', file: '/srv/app/lib/mw.js', line: 3 };
const wrap: Frame = { name: 'asyncWrapper', file: '/srv/app/lib/wrap.js', line: 7 };
const render: Frame = { name: 'renderFeed', file: '/srv/app/src/feed.js', line: 42 };
const sort: Frame = { name: 'sortItems', file: '/srv/app/src/feed.js', line: 80 };

function badProfileMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ErgometerError, `expected an ErgometerError, got ${String(error)}`);
    assert.equal(error.status, 400);
    assert.equal(error.code, 'ERGOMETER_BAD_PROFILE');
    return error.message;
  }
  assert.fail('expected the profile to be refused');
}

describe('profile decoding', () => {
  it('sums self and total per endpoint and flag variant; recursion counts once per stack', () => {
    const pprof = buildPprof('cpu_ns', [
      { stack: [mw, wrap, render], endpoint: 'GET /feed/:id', cost: 100, count: 2, flags: { ranker: 'on' } },
      { stack: [mw, wrap, render, sort], endpoint: 'GET /feed/:id', cost: 50, flags: { ranker: 'off' } },
      // recursion: render appears twice in one stack
      { stack: [mw, render, render], endpoint: 'GET /feed/:id', cost: 10 },
      { stack: [mw], cost: 7 },
    ]);
    const decoded = decodeProfile(pprof, 'cpu_ns');
    assert.equal(decoded.samples.length, 4);
    assert.equal(decoded.samples[3]?.endpoint, NO_REQUEST);
    const summary = summarizeProfile(decoded);
    const row = (endpoint: string, fn: string, flagKey = '', flagVariant = '') =>
      summary.functions.find(
        (f) => f.endpoint === endpoint && f.function === fn && f.flagKey === flagKey && f.flagVariant === flagVariant,
      );
    assert.deepEqual(
      summary.endpoints.find((e) => e.endpoint === 'GET /feed/:id' && e.flagKey === ''),
      { endpoint: 'GET /feed/:id', flagKey: '', flagVariant: '', samples: 4, cost: 160 },
    );
    const r = row('GET /feed/:id', 'renderFeed');
    assert.equal(r?.totalCost, 160);
    assert.equal(r?.selfCost, 110);
    assert.equal(r?.totalSamples, 4);
    assert.equal(row('GET /feed/:id', 'sortItems')?.selfCost, 50);
    assert.equal(row('GET /feed/:id', 'middleware')?.selfCost, 0);
    assert.equal(row('GET /feed/:id', 'renderFeed', 'ranker', 'on')?.totalCost, 100);
    assert.equal(row('GET /feed/:id', 'renderFeed', 'ranker', 'off')?.selfCost, 0);
    assert.equal(row(NO_REQUEST, 'middleware')?.selfCost, 7);
    // self costs partition each group's cost
    for (const e of summary.endpoints) {
      const selfSum = summary.functions
        .filter((f) => f.endpoint === e.endpoint && f.flagKey === e.flagKey && f.flagVariant === e.flagVariant)
        .reduce((sum, f) => sum + f.selfCost, 0);
      assert.equal(selfSum, e.cost);
    }
  });

  it('charges a native leaf (no script) to its nearest JavaScript caller; pseudo-frames keep their own', () => {
    const write: Frame = { name: 'write', file: '', line: 0 };
    const writev: Frame = { name: 'writev', file: '', line: 0 };
    const gc: Frame = { name: '(garbage collector)', file: '', line: 0 };
    const summary = summarizeProfile(
      decodeProfile(
        buildPprof('cpu_ns', [
          // One process shows the socket binding under renderFeed, another charges it to renderFeed itself.
          { stack: [mw, render, write], endpoint: 'GET /feed/:id', cost: 30 },
          { stack: [mw, render, write, writev], endpoint: 'GET /feed/:id', cost: 5 },
          { stack: [mw, render], endpoint: 'GET /feed/:id', cost: 20 },
          { stack: [mw, gc], endpoint: 'GET /feed/:id', cost: 4 },
          { stack: [write], cost: 3 },
        ]),
        'cpu_ns',
      ),
    );
    const row = (endpoint: string, fn: string) =>
      summary.functions.find((f) => f.endpoint === endpoint && f.function === fn && f.flagKey === '');
    assert.equal(row('GET /feed/:id', 'renderFeed')?.selfCost, 55);
    assert.equal(row('GET /feed/:id', 'write')?.selfCost, 0);
    assert.equal(row('GET /feed/:id', 'write')?.totalCost, 35, 'natives keep their total');
    assert.equal(row('GET /feed/:id', 'writev')?.selfCost, 0);
    assert.equal(row('GET /feed/:id', '(garbage collector)')?.selfCost, 4);
    assert.equal(row(NO_REQUEST, 'write')?.selfCost, 3, 'a stack of natives only keeps its leaf');
  });

  it('reads gzip and plain protobuf alike, and the instructions metric', () => {
    const samples = [{ stack: [mw, render], endpoint: 'GET /', cost: 1234 }];
    const plain = decodeProfile(buildPprof('instructions', samples, { gzip: false }), 'instructions');
    const zipped = decodeProfile(buildPprof('instructions', samples), 'instructions');
    assert.deepEqual(plain, zipped);
    assert.equal(plain.samples[0]?.cost, 1234);
  });

  it('refuses what it cannot read, naming the problem', () => {
    assert.match(
      badProfileMessage(() => decodeProfile(Buffer.from('not a profile at all'), 'cpu_ns')),
      /pprof/,
    );
    assert.match(
      badProfileMessage(() => decodeProfile(Buffer.from([0x1f, 0x8b, 1, 2, 3]), 'cpu_ns')),
      /corrupt gzip/,
    );
    const cpu = buildPprof('cpu_ns', [{ stack: [render], endpoint: 'GET /', cost: 1 }]);
    assert.match(
      badProfileMessage(() => decodeProfile(cpu, 'instructions')),
      /no "instructions" column/,
    );
    const deep = buildPprof('cpu_ns', [
      { stack: Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, file: 'a.js', line: i })), cost: 1 },
    ]);
    assert.match(
      badProfileMessage(() => decodeProfile(deep, 'cpu_ns', { ...DEFAULT_PROFILE_LIMITS, maxStackDepth: 10 })),
      /sample\[0\]: stack deeper than the limit of 10/,
    );
    const long = buildPprof('cpu_ns', [{ stack: [{ name: 'x'.repeat(50), file: 'a.js', line: 1 }], cost: 1 }]);
    assert.match(
      badProfileMessage(() => decodeProfile(long, 'cpu_ns', { ...DEFAULT_PROFILE_LIMITS, maxStringLength: 20 })),
      /function\[0\]\.name: 50 characters/,
    );
    const many = buildPprof(
      'cpu_ns',
      Array.from({ length: 5 }, () => ({ stack: [render], cost: 1 })),
    );
    assert.match(
      badProfileMessage(() => decodeProfile(many, 'cpu_ns', { ...DEFAULT_PROFILE_LIMITS, maxSamples: 4 })),
      /5 samples, more than the limit of 4/,
    );
    // A sample pointing at a location the profile does not have.
    const strings = new StringTable();
    const dangling = new Profile({
      sampleType: [
        new ValueType({ type: strings.dedup('samples'), unit: strings.dedup('count') }),
        new ValueType({ type: strings.dedup('cpu'), unit: strings.dedup('nanoseconds') }),
      ],
      sample: [{ locationId: [99], value: [1, 5] }],
      stringTable: strings,
    });
    assert.match(
      badProfileMessage(() => decodeProfile(gzipSync(dangling.encode()), 'cpu_ns')),
      /location 99 is not in the profile/,
    );
  });

  it('never throws anything but a 400/413 ErgometerError on random bytes (fuzz)', () => {
    const valid = buildPprof('cpu_ns', [{ stack: [mw, render], endpoint: 'GET /', cost: 9, flags: { a: 'b' } }], {
      gzip: false,
    });
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }),
          // valid profile with some bytes flipped: deeper into the decoder
          fc
            .array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 6 })
            .map((flips) => {
              const copy = Uint8Array.from(valid);
              for (const [at, value] of flips) copy[at] = value;
              return copy;
            }),
        ),
        (bytes) => {
          try {
            summarizeProfile(decodeProfile(Buffer.from(bytes), 'cpu_ns'));
          } catch (error) {
            assert.ok(error instanceof ErgometerError, String(error));
            assert.ok(error.status === 400 || error.status === 413);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
