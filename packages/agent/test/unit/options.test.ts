/**
 * resolveOptions: every option, its environment variable, its default, and the
 * errors for values the agent cannot use (SPEC §2, §7: "a clear error naming
 * what is wrong").
 */
import assert from 'node:assert/strict';
import os from 'node:os';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BACKEND_SOURCES } from '../../src/backend/sources';
import { ErgometerError } from '../../src/errors';
import { type AgentOptions, type ResolvedOptions, resolveOptions } from '../../src/options';

type Env = Record<string, string | undefined>;

/** The two required settings plus a commit, so that no test depends on the checkout it runs in. */
const REQUIRED: Env = {
  ERGOMETER_SERVICE: 'api',
  ERGOMETER_COLLECTOR: 'file:./samples.ndjson',
  ERGOMETER_COMMIT: 'c0',
};

/** ResolvedOptions with the Map turned into an object, so that assert.deepEqual shows a readable diff. */
function plain(resolved: ResolvedOptions): Record<string, unknown> {
  return { ...resolved, endpointSampleRates: Object.fromEntries(resolved.endpointSampleRates) };
}

/** Asserts that `fn` throws ErgometerError ERGOMETER_BAD_OPTION whose message matches every pattern. */
function rejects(fn: () => unknown, ...patterns: RegExp[]): ErgometerError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ErgometerError, `expected an ErgometerError, got ${String(caught)}`);
  assert.equal(caught.code, 'ERGOMETER_BAD_OPTION');
  for (const pattern of patterns) assert.match(caught.message, pattern);
  return caught;
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface OptionCase {
  option: keyof AgentOptions;
  envName: string;
  /** A value given through the environment, and what it resolves to. */
  envText: string;
  fromEnv: unknown;
  /** A different value given as an option: it must win over the environment. */
  optionValue: unknown;
  fromOption: unknown;
  /** The resolved value when neither is given; `required` when that is an error. */
  fallback: unknown;
}

/** Every backend instrumentation set to `on`. */
const backendAll = (on: boolean) => Object.fromEntries(BACKEND_SOURCES.map((source) => [source, on]));

const OPTION_CASES: OptionCase[] = [
  {
    option: 'service',
    envName: 'ERGOMETER_SERVICE',
    envText: 'api',
    fromEnv: 'api',
    optionValue: 'web',
    fromOption: 'web',
    fallback: 'required',
  },
  {
    option: 'collector',
    envName: 'ERGOMETER_COLLECTOR',
    envText: 'file:./env.ndjson',
    fromEnv: 'file:./env.ndjson',
    optionValue: 'http://127.0.0.1:7070',
    fromOption: 'http://127.0.0.1:7070',
    fallback: 'required',
  },
  {
    option: 'token',
    envName: 'ERGOMETER_TOKEN',
    envText: 'tok-env',
    fromEnv: 'tok-env',
    optionValue: 'tok-opt',
    fromOption: 'tok-opt',
    fallback: undefined,
  },
  {
    option: 'sampleRate',
    envName: 'ERGOMETER_SAMPLE_RATE',
    envText: '0.25',
    fromEnv: 0.25,
    optionValue: 0.5,
    fromOption: 0.5,
    fallback: 0.01,
  },
  {
    option: 'endpointSampleRates',
    envName: 'ERGOMETER_ENDPOINT_SAMPLE_RATES',
    envText: 'GET /health=0, GET /feed/:id=0.5',
    fromEnv: { 'GET /health': 0, 'GET /feed/:id': 0.5 },
    optionValue: { 'POST /upload': 1 },
    fromOption: { 'POST /upload': 1 },
    fallback: {},
  },
  {
    option: 'commit',
    envName: 'ERGOMETER_COMMIT',
    envText: 'abc123',
    fromEnv: 'abc123',
    optionValue: 'def456',
    fromOption: 'def456',
    fallback: 'detected',
  },
  {
    option: 'region',
    envName: 'ERGOMETER_REGION',
    envText: 'eu-1',
    fromEnv: 'eu-1',
    optionValue: 'us-2',
    fromOption: 'us-2',
    fallback: '',
  },
  {
    option: 'host',
    envName: 'ERGOMETER_HOST',
    envText: 'web-7',
    fromEnv: 'web-7',
    optionValue: 'web-8',
    fromOption: 'web-8',
    fallback: os.hostname(),
  },
  {
    option: 'counter',
    envName: 'ERGOMETER_COUNTER',
    envText: 'thread-cputime',
    fromEnv: 'thread-cputime',
    optionValue: 'task-clock',
    fromOption: 'task-clock',
    fallback: 'auto',
  },
  {
    option: 'flushIntervalMs',
    envName: 'ERGOMETER_FLUSH_INTERVAL_MS',
    envText: '500',
    fromEnv: 500,
    optionValue: 250,
    fromOption: 250,
    fallback: 10_000,
  },
  {
    option: 'maxBatchSamples',
    envName: 'ERGOMETER_MAX_BATCH_SAMPLES',
    envText: '10',
    fromEnv: 10,
    optionValue: 20,
    fromOption: 20,
    fallback: 1000,
  },
  {
    option: 'maxQueuedSamples',
    envName: 'ERGOMETER_MAX_QUEUED_SAMPLES',
    envText: '100',
    fromEnv: 100,
    optionValue: 200,
    fromOption: 200,
    fallback: 20_000,
  },
  {
    option: 'maxBatchBytes',
    envName: 'ERGOMETER_MAX_BATCH_BYTES',
    envText: '65536',
    fromEnv: 65_536,
    optionValue: 131_072,
    fromOption: 131_072,
    fallback: 524_288,
  },
  {
    option: 'maxQueuedBytes',
    envName: 'ERGOMETER_MAX_QUEUED_BYTES',
    envText: '8388608',
    fromEnv: 8_388_608,
    optionValue: 16_777_216,
    fromOption: 16_777_216,
    fallback: 4_194_304,
  },
  {
    option: 'requestTimeoutMs',
    envName: 'ERGOMETER_REQUEST_TIMEOUT_MS',
    envText: '2500',
    fromEnv: 2500,
    optionValue: 5000,
    fromOption: 5000,
    fallback: 10_000,
  },
  {
    option: 'exitFlushTimeoutMs',
    envName: 'ERGOMETER_EXIT_FLUSH_TIMEOUT_MS',
    envText: '0',
    fromEnv: 0,
    optionValue: 500,
    fromOption: 500,
    fallback: 2000,
  },
  {
    option: 'userHashKey',
    envName: 'ERGOMETER_USER_HASH_KEY',
    envText: 'k-env',
    fromEnv: 'k-env',
    optionValue: 'k-opt',
    fromOption: 'k-opt',
    fallback: undefined,
  },
  {
    option: 'sampleWindowMs',
    envName: 'ERGOMETER_SAMPLE_WINDOW_MS',
    envText: '20',
    fromEnv: 20,
    optionValue: 30,
    fromOption: 30,
    fallback: 50,
  },
  {
    option: 'backend',
    envName: 'ERGOMETER_BACKEND',
    envText: 'pg',
    fromEnv: { ...backendAll(false), pg: true },
    optionValue: { pg: false },
    fromOption: { ...backendAll(true), pg: false },
    fallback: backendAll(true),
  },
  {
    option: 'profile',
    envName: 'ERGOMETER_PROFILE',
    envText: '1',
    fromEnv: {
      enabled: true,
      processFraction: 1,
      dutyCycle: 0.1,
      periodMs: 60_000,
      intervalMicros: 10_000,
      windowIntervalMicros: 2_500,
      sampler: 'auto',
      schedule: 'auto',
      labelFraction: undefined,
    },
    optionValue: { enabled: false, dutyCycle: 0.5 },
    fromOption: {
      enabled: false,
      processFraction: 1,
      dutyCycle: 0.5,
      periodMs: 60_000,
      intervalMicros: 10_000,
      windowIntervalMicros: 2_500,
      sampler: 'auto',
      schedule: 'auto',
      labelFraction: undefined,
    },
    fallback: {
      enabled: false,
      processFraction: 1,
      dutyCycle: 0.1,
      periodMs: 60_000,
      intervalMicros: 10_000,
      windowIntervalMicros: 2_500,
      sampler: 'auto',
      schedule: 'auto',
      labelFraction: undefined,
    },
  },
];

describe('profile options', () => {
  test('each has its environment variable, and a bad one is named', () => {
    const env = {
      ...REQUIRED,
      ERGOMETER_PROFILE: 'on',
      ERGOMETER_PROFILE_PROCESS_FRACTION: '0.25',
      ERGOMETER_PROFILE_DUTY_CYCLE: '0.5',
      ERGOMETER_PROFILE_PERIOD_MS: '30000',
      ERGOMETER_PROFILE_INTERVAL_US: '5000',
      ERGOMETER_PROFILE_WINDOW_INTERVAL_US: '1000',
      ERGOMETER_PROFILE_SAMPLER: 'v8',
      ERGOMETER_PROFILE_SCHEDULE: 'windows',
      ERGOMETER_PROFILE_LABEL_FRACTION: '0.3',
    };
    assert.deepEqual(resolveOptions({}, env).profile, {
      enabled: true,
      processFraction: 0.25,
      dutyCycle: 0.5,
      periodMs: 30_000,
      intervalMicros: 5000,
      windowIntervalMicros: 1000,
      sampler: 'v8',
      schedule: 'windows',
      labelFraction: 0.3,
    });
    // Unset: the profiler picks by schedule (0.2 on continuous, 1 on windows).
    assert.equal(resolveOptions({}, REQUIRED).profile.labelFraction, undefined);
    assert.equal(resolveOptions({ profile: { labelFraction: 1 } }, REQUIRED).profile.labelFraction, 1);
    rejects(
      () => resolveOptions({ profile: { labelFraction: 0 } }, REQUIRED),
      /profile.labelFraction \(ERGOMETER_PROFILE_LABEL_FRACTION\): expected a number above 0 up to 1, got 0/,
    );
    rejects(
      () => resolveOptions({}, { ...REQUIRED, ERGOMETER_PROFILE_LABEL_FRACTION: '1.5' }),
      /profile.labelFraction \(ERGOMETER_PROFILE_LABEL_FRACTION\): expected a number above 0 up to 1, got "1.5"/,
    );
    assert.equal(resolveOptions({}, REQUIRED).profile.schedule, 'auto');
    assert.equal(resolveOptions({}, REQUIRED).profile.sampler, 'auto');
    assert.equal(resolveOptions({ profile: { sampler: 'interrupt' } }, REQUIRED).profile.sampler, 'interrupt');
    rejects(
      () => resolveOptions({}, { ...REQUIRED, ERGOMETER_PROFILE_SAMPLER: 'perf' }),
      /profile.sampler \(ERGOMETER_PROFILE_SAMPLER\): expected one of auto, interrupt, v8, got "perf"/,
    );
    rejects(
      () => resolveOptions({ profile: { schedule: 'sometimes' as never } }, REQUIRED),
      /profile.schedule \(ERGOMETER_PROFILE_SCHEDULE\): expected one of auto, windows, continuous, got "sometimes"/,
    );
    rejects(
      () => resolveOptions({}, { ...REQUIRED, ERGOMETER_PROFILE: 'maybe' }),
      /profile.enabled \(ERGOMETER_PROFILE\)/,
    );
    rejects(
      () => resolveOptions({ profile: { dutyCycle: 2 } }, REQUIRED),
      /profile.dutyCycle \(ERGOMETER_PROFILE_DUTY_CYCLE\)/,
    );
    rejects(
      () => resolveOptions({ profile: { periodMs: 1000, intervalMicros: 1_000_000 } }, REQUIRED),
      /profile.intervalMicros .*shorter than profile.periodMs/,
    );
    rejects(
      () => resolveOptions({}, { ...REQUIRED, ERGOMETER_PROFILE_WINDOW_INTERVAL_US: '50' }),
      /profile.windowIntervalMicros \(ERGOMETER_PROFILE_WINDOW_INTERVAL_US\)/,
    );
    rejects(() => resolveOptions({ profile: true as never }, REQUIRED), /profile: expected an object/);
  });

  test('processFraction: the collector chooses by default over http(s), a number draws here, "collector" needs http', () => {
    const overHttp = { ...REQUIRED, ERGOMETER_COLLECTOR: 'https://collector.internal:7070' };
    assert.equal(resolveOptions({}, overHttp).profile.processFraction, 'collector');
    assert.equal(
      resolveOptions({}, { ...overHttp, ERGOMETER_PROFILE_PROCESS_FRACTION: '0.5' }).profile.processFraction,
      0.5,
    );
    assert.equal(resolveOptions({ profile: { processFraction: 1 } }, overHttp).profile.processFraction, 1);
    assert.equal(
      resolveOptions({}, { ...overHttp, ERGOMETER_PROFILE_PROCESS_FRACTION: 'collector' }).profile.processFraction,
      'collector',
    );
    // A file: collector has nobody to ask: every process profiles unless told a fraction.
    assert.equal(resolveOptions({}, REQUIRED).profile.processFraction, 1);
    rejects(
      () => resolveOptions({ profile: { processFraction: 'collector' } }, REQUIRED),
      /profile.processFraction \(ERGOMETER_PROFILE_PROCESS_FRACTION\): "collector" needs an http: or https: collector/,
    );
    rejects(
      () => resolveOptions({}, { ...overHttp, ERGOMETER_PROFILE_PROCESS_FRACTION: 'some' }),
      /expected "collector" or a number from 0 to 1, got "some"/,
    );
    rejects(
      () => resolveOptions({ profile: { processFraction: 1.5 } }, overHttp),
      /expected "collector" or a number from 0 to 1, got 1.5/,
    );
  });
});

describe('each option and its environment variable', () => {
  test('the table covers every resolved option (userId, a function, has no variable)', () => {
    assert.deepEqual(
      [...OPTION_CASES.map((c) => c.option), 'userId'].sort(),
      Object.keys(resolveOptions({}, REQUIRED)).sort(),
    );
  });

  test('userId: a function or nothing', () => {
    const userId = () => 'u1';
    assert.equal(resolveOptions({ userId }, REQUIRED).userId, userId);
    assert.equal(resolveOptions({}, REQUIRED).userId, undefined);
    rejects(() => resolveOptions({ userId: 'x-user' as never }, REQUIRED), /userId: expected a function/);
  });

  test('maxQueuedBytes must hold two batches', () => {
    rejects(
      () => resolveOptions({ maxBatchBytes: 1_000_000, maxQueuedBytes: 1_500_000 }, REQUIRED),
      /maxQueuedBytes \(ERGOMETER_MAX_QUEUED_BYTES\): must be at least twice maxBatchBytes \(1000000\)/,
    );
    assert.equal(
      resolveOptions({ maxBatchBytes: 1_000_000, maxQueuedBytes: 2_000_000 }, REQUIRED).maxQueuedBytes,
      2_000_000,
    );
  });

  for (const c of OPTION_CASES) {
    test(`${c.option} ← ${c.envName}`, () => {
      const fromEnv = plain(resolveOptions({}, { ...REQUIRED, [c.envName]: c.envText }));
      assert.deepEqual(fromEnv[c.option], c.fromEnv, 'read from the environment');

      const both = plain(resolveOptions({ [c.option]: c.optionValue }, { ...REQUIRED, [c.envName]: c.envText }));
      assert.deepEqual(both[c.option], c.fromOption, 'the explicit option wins over the environment');

      // An empty variable is an unset one (a common result of `FOO= node app.js` or a blank line in .env).
      const env = { ...REQUIRED, [c.envName]: '' };
      if (c.fallback === 'required') {
        rejects(() => resolveOptions({}, env), new RegExp(`${c.option} \\(${c.envName}\\)`));
      } else if (c.fallback === 'detected') {
        // Nothing in the environment: `git rev-parse HEAD` in the working directory, else `unknown`.
        assert.match(String(resolveOptions({}, env).commit), /^(?:[0-9a-f]{40}|[0-9a-f]{64}|unknown)$/);
      } else {
        assert.deepEqual(plain(resolveOptions({}, env))[c.option], c.fallback, 'default');
      }
    });
  }

  test('every numeric environment variable accepts the forms Number() reads', () => {
    const resolved = resolveOptions(
      {},
      {
        ...REQUIRED,
        ERGOMETER_SAMPLE_RATE: ' 1e-1 ',
        ERGOMETER_FLUSH_INTERVAL_MS: '1e3',
        ERGOMETER_SAMPLE_WINDOW_MS: '0x10',
      },
    );
    assert.equal(resolved.sampleRate, 0.1);
    assert.equal(resolved.flushIntervalMs, 1000);
    assert.equal(resolved.sampleWindowMs, 16);
  });

  test('per-endpoint rates: the last "=" splits, names are trimmed, the last duplicate wins', () => {
    const rates = resolveOptions(
      {},
      { ...REQUIRED, ERGOMETER_ENDPOINT_SAMPLE_RATES: ' GET /a=b = 0.5 ,GET /c=1,GET /c=0.2' },
    ).endpointSampleRates;
    assert.deepEqual(Object.fromEntries(rates), { 'GET /a=b': 0.5, 'GET /c': 0.2 });
  });
});

describe('service and collector are required', () => {
  for (const [option, envName] of [
    ['service', 'ERGOMETER_SERVICE'],
    ['collector', 'ERGOMETER_COLLECTOR'],
  ] as const) {
    test(`missing ${option}: the message names the option, the variable, and how to set them`, () => {
      const env: Env = { ...REQUIRED };
      delete env[envName];
      const error = rejects(
        () => resolveOptions({}, env),
        new RegExp(`\\b${option} \\(${envName}\\)`),
        /is required/,
        new RegExp(`pass \\{ ${option}: \\.\\.\\. \\} to start\\(\\) or set ${envName}`),
      );
      assert.equal(error.name, 'ErgometerError');
      rejects(() => resolveOptions({ [option]: undefined }, env), new RegExp(envName));
    });
  }

  test('start(options) needs an object', () => {
    rejects(() => resolveOptions(null as unknown as AgentOptions, REQUIRED), /options/, /takes an object/);
    rejects(() => resolveOptions('api' as unknown as AgentOptions, REQUIRED), /takes an object/);
  });
});

interface BadCase {
  title: string;
  options?: Record<string, unknown>;
  env?: Env;
  /** Every one must appear in the message. */
  expect: RegExp[];
}

/** The error names the option and its variable, and — where it is not a secret — the value it refused. */
const BAD_CASES: BadCase[] = [
  {
    title: 'sampleRate NaN',
    options: { sampleRate: Number.NaN },
    expect: [/sampleRate \(ERGOMETER_SAMPLE_RATE\)/, /got NaN/],
  },
  { title: 'sampleRate -0.1', options: { sampleRate: -0.1 }, expect: [/sampleRate/, /from 0 to 1/, /got -0\.1\b/] },
  { title: 'sampleRate 1.5', options: { sampleRate: 1.5 }, expect: [/sampleRate/, /got 1\.5\b/] },
  { title: 'sampleRate Infinity', options: { sampleRate: Number.POSITIVE_INFINITY }, expect: [/got Infinity/] },
  { title: 'sampleRate of the wrong type', options: { sampleRate: true }, expect: [/sampleRate/, /got boolean/] },
  {
    title: 'ERGOMETER_SAMPLE_RATE "abc"',
    env: { ERGOMETER_SAMPLE_RATE: 'abc' },
    expect: [/ERGOMETER_SAMPLE_RATE/, /got "abc"/],
  },
  { title: 'ERGOMETER_SAMPLE_RATE "1.5"', env: { ERGOMETER_SAMPLE_RATE: '1.5' }, expect: [/got "1\.5"/] },
  { title: 'ERGOMETER_SAMPLE_RATE "-0.1"', env: { ERGOMETER_SAMPLE_RATE: '-0.1' }, expect: [/got "-0\.1"/] },
  { title: 'ERGOMETER_SAMPLE_RATE "50%"', env: { ERGOMETER_SAMPLE_RATE: '50%' }, expect: [/got "50%"/] },
  { title: 'ERGOMETER_SAMPLE_RATE blank', env: { ERGOMETER_SAMPLE_RATE: '  ' }, expect: [/got " {2}"/] },
  {
    title: 'flushIntervalMs not an integer',
    options: { flushIntervalMs: 1.5 },
    expect: [/flushIntervalMs \(ERGOMETER_FLUSH_INTERVAL_MS\)/, /integer from 10 to 3600000/, /got 1\.5\b/],
  },
  {
    title: 'ERGOMETER_FLUSH_INTERVAL_MS "1.5"',
    env: { ERGOMETER_FLUSH_INTERVAL_MS: '1.5' },
    expect: [/ERGOMETER_FLUSH_INTERVAL_MS/, /got "1\.5"/],
  },
  { title: 'ERGOMETER_FLUSH_INTERVAL_MS "abc"', env: { ERGOMETER_FLUSH_INTERVAL_MS: 'abc' }, expect: [/got "abc"/] },
  { title: 'flushIntervalMs below its minimum', options: { flushIntervalMs: 9 }, expect: [/from 10 to/, /got 9\b/] },
  { title: 'flushIntervalMs NaN', options: { flushIntervalMs: Number.NaN }, expect: [/got NaN/] },
  {
    title: 'maxBatchSamples 0',
    options: { maxBatchSamples: 0 },
    expect: [/maxBatchSamples \(ERGOMETER_MAX_BATCH_SAMPLES\)/, /from 1 to 100000/, /got 0\b/],
  },
  { title: 'ERGOMETER_MAX_BATCH_SAMPLES "ten"', env: { ERGOMETER_MAX_BATCH_SAMPLES: 'ten' }, expect: [/got "ten"/] },
  { title: 'maxBatchSamples above its maximum', options: { maxBatchSamples: 100_001 }, expect: [/got 100001/] },
  {
    title: 'maxQueuedSamples negative',
    env: { ERGOMETER_MAX_QUEUED_SAMPLES: '-5' },
    expect: [/maxQueuedSamples \(ERGOMETER_MAX_QUEUED_SAMPLES\)/, /got "-5"/],
  },
  { title: 'maxQueuedSamples 2.5', options: { maxQueuedSamples: 2.5 }, expect: [/got 2\.5/] },
  {
    title: 'sampleWindowMs 0',
    options: { sampleWindowMs: 0 },
    expect: [/sampleWindowMs \(ERGOMETER_SAMPLE_WINDOW_MS\)/, /from 1 to 60000/, /got 0\b/],
  },
  { title: 'ERGOMETER_SAMPLE_WINDOW_MS "0.5"', env: { ERGOMETER_SAMPLE_WINDOW_MS: '0.5' }, expect: [/got "0\.5"/] },
  {
    title: 'service with a newline',
    options: { service: 'a\nb' },
    expect: [/service \(ERGOMETER_SERVICE\)/, /control characters/],
  },
  {
    title: 'ERGOMETER_HOST with a bell',
    env: { ERGOMETER_HOST: 'web\u00077' },
    expect: [/host \(ERGOMETER_HOST\)/, /control characters/],
  },
  { title: 'region with DEL', options: { region: 'eu\u007f' }, expect: [/region \(ERGOMETER_REGION\)/, /control/] },
  { title: 'commit with a CR', options: { commit: 'abc\r' }, expect: [/commit \(ERGOMETER_COMMIT\)/, /control/] },
  {
    title: 'ERGOMETER_COMMIT with a tab',
    env: { ERGOMETER_COMMIT: 'a\tb' },
    expect: [/commit \(ERGOMETER_COMMIT\)/, /control/],
  },
  {
    title: 'collector too long',
    options: { collector: `file:${'x'.repeat(300)}` },
    expect: [/collector \(ERGOMETER_COLLECTOR\)/, /longer than 200 characters/],
  },
  {
    title: 'host too long',
    env: { ERGOMETER_HOST: 'h'.repeat(201) },
    expect: [/host \(ERGOMETER_HOST\)/, /longer than 200/],
  },
  { title: 'service a number', options: { service: 42 }, expect: [/service/, /expected a string, got 42/] },
  {
    title: 'ERGOMETER_COUNTER unknown',
    env: { ERGOMETER_COUNTER: 'cycles' },
    expect: [/counter \(ERGOMETER_COUNTER\)/, /"cycles"/, /auto/],
  },
  { title: 'counter unknown', options: { counter: 'bogus' }, expect: [/counter \(ERGOMETER_COUNTER\)/, /"bogus"/] },
  { title: 'counter not a string', options: { counter: 1 }, expect: [/counter/, /expected a string, got 1/] },
  {
    title: 'ERGOMETER_ENDPOINT_SAMPLE_RATES entry without "="',
    env: { ERGOMETER_ENDPOINT_SAMPLE_RATES: 'GET /a=0.1,GET /b' },
    expect: [/ERGOMETER_ENDPOINT_SAMPLE_RATES/, /ENDPOINT=RATE/, /got "GET \/b"/],
  },
  {
    title: 'ERGOMETER_ENDPOINT_SAMPLE_RATES entry without a name',
    env: { ERGOMETER_ENDPOINT_SAMPLE_RATES: '=0.5' },
    expect: [/ENDPOINT=RATE/, /got "=0\.5"/],
  },
  {
    title: 'ERGOMETER_ENDPOINT_SAMPLE_RATES entry with a blank name',
    env: { ERGOMETER_ENDPOINT_SAMPLE_RATES: ' =0.5' },
    expect: [/ENDPOINT=RATE/, /got " =0\.5"/],
  },
  {
    // Regression: "GET /a=" used to resolve to rate 0, silently turning sampling off for that endpoint.
    title: 'ERGOMETER_ENDPOINT_SAMPLE_RATES entry without a rate',
    env: { ERGOMETER_ENDPOINT_SAMPLE_RATES: 'GET /a=' },
    expect: [/ERGOMETER_ENDPOINT_SAMPLE_RATES/, /ENDPOINT=RATE/, /got "GET \/a="/],
  },
  {
    title: 'ERGOMETER_ENDPOINT_SAMPLE_RATES rate out of range',
    env: { ERGOMETER_ENDPOINT_SAMPLE_RATES: 'GET /a=2' },
    expect: [/endpointSampleRates\["GET \/a"\]/, /from 0 to 1/, /got "2"/],
  },
  {
    title: 'endpointSampleRates option rate out of range',
    options: { endpointSampleRates: { 'GET /a': 1.5 } },
    expect: [/endpointSampleRates\["GET \/a"\]/, /got 1\.5/],
  },
  {
    title: 'endpointSampleRates of the wrong type',
    options: { endpointSampleRates: 3 },
    expect: [/endpointSampleRates/, /expected an object/, /got 3/],
  },
];

describe('bad values are refused with ERGOMETER_BAD_OPTION', () => {
  for (const c of BAD_CASES) {
    test(c.title, () => {
      rejects(() => resolveOptions((c.options ?? {}) as AgentOptions, { ...REQUIRED, ...c.env }), ...c.expect);
    });
  }

  test('a long value is shortened in the message, not echoed whole', () => {
    const error = rejects(() => resolveOptions({}, { ...REQUIRED, ERGOMETER_SAMPLE_RATE: '9'.repeat(10_000) }));
    assert.ok(error.message.length < 300, error.message);
    assert.match(error.message, new RegExp(`"${'9'.repeat(60)}…"`));
  });

  test('a refused token is not echoed: it is a secret', () => {
    const token = 'sekrit-token-value';
    const error = rejects(() => resolveOptions({ token: `${token}\n` }, REQUIRED), /token \(ERGOMETER_TOKEN\)/);
    assert.ok(!error.message.includes(token), error.message);
    const long = rejects(() => resolveOptions({}, { ...REQUIRED, ERGOMETER_TOKEN: token.repeat(20) }), /longer/);
    assert.ok(!long.message.includes(token), long.message);
  });
});

/**
 * What "a number" means for a rate string: what Number() makes of it, except
 * that a blank string is not 0 (Number('  ') is 0, a classic trap). The empty
 * string is an unset variable and gives the default.
 */
function parsedRate(text: string): number {
  return text.trim() === '' ? Number.NaN : Number(text);
}

/** Strings that look like rates, in the forms people and tools write them. */
const rateLike: fc.Arbitrary<string> = fc.oneof(
  fc.double({ min: 0, max: 1, noNaN: true }).map(String),
  fc.double({ min: 0, max: 1, noNaN: true }).map((n) => n.toFixed(4)),
  fc.double({ min: 0, max: 1, noNaN: true }).map((n) => n.toExponential(3)),
  fc.double().map(String),
  fc.integer({ min: -3, max: 3 }).map(String),
  fc
    .tuple(fc.constantFrom('', ' ', '\t', '+', '-', '0', '.', '\n'), fc.double({ min: -2, max: 2, noNaN: true }))
    .map(([prefix, n]) => `${prefix}${n}`),
  fc.constantFrom(
    '0',
    '1',
    '-0',
    '+1',
    '.5',
    '5.',
    '1.0000000000000001',
    '0x1',
    '0b1',
    '0o0',
    '1e-400',
    '1_0',
    'Infinity',
    '-Infinity',
    'NaN',
    '0,5',
    '1/2',
    '50%',
    '١',
    ' ',
    '\u00a00.5\u00a0',
  ),
  fc.string(),
  fc.string({ unit: 'binary' }),
);

describe('property: rates', () => {
  test('a rate string is accepted exactly when it parses to a number in [0, 1], and equals Number(s)', () => {
    fc.assert(
      fc.property(rateLike, (text) => {
        const expected = parsedRate(text);
        const valid = Number.isFinite(expected) && expected >= 0 && expected <= 1;
        let resolved: ResolvedOptions;
        try {
          resolved = resolveOptions({}, { ...REQUIRED, ERGOMETER_SAMPLE_RATE: text });
        } catch (error) {
          // Never a crash of another kind, and never a refusal of a good value.
          assert.ok(error instanceof ErgometerError, `not an ErgometerError: ${String(error)}`);
          assert.equal(error.code, 'ERGOMETER_BAD_OPTION');
          assert.ok(!valid, `refused ${JSON.stringify(text)}: ${error.message}`);
          assert.match(error.message, /ERGOMETER_SAMPLE_RATE/);
          return;
        }
        if (text === '') assert.equal(resolved.sampleRate, 0.01);
        else {
          assert.ok(valid, `accepted ${JSON.stringify(text)} as ${resolved.sampleRate}`);
          assert.equal(resolved.sampleRate, expected);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('a rate given as a number is accepted exactly when it is in [0, 1]', () => {
    fc.assert(
      fc.property(fc.oneof(fc.double(), fc.double({ min: -0.1, max: 1.1 })), (n) => {
        const valid = n >= 0 && n <= 1; // false for NaN
        try {
          assert.equal(resolveOptions({ sampleRate: n }, REQUIRED).sampleRate, n);
          assert.ok(valid, `accepted ${n}`);
        } catch (error) {
          if (error instanceof assert.AssertionError) throw error;
          assert.ok(error instanceof ErgometerError && error.code === 'ERGOMETER_BAD_OPTION', String(error));
          assert.ok(!valid, `refused ${n}`);
        }
      }),
    );
  });

  test('ERGOMETER_ENDPOINT_SAMPLE_RATES round-trips any list of endpoints and rates', () => {
    const endpointName = fc
      .tuple(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE'), fc.webPath())
      .map(([method, p]) => `${method} ${p === '' ? '/' : p}`)
      .filter((name) => !name.includes(','));
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.tuple(endpointName, fc.double({ min: 0, max: 1, noNaN: true })), {
          selector: ([name]) => name,
          maxLength: 8,
        }),
        (entries) => {
          const text = entries.map(([name, r]) => `${name}=${r}`).join(',');
          const resolved = resolveOptions({}, { ...REQUIRED, ERGOMETER_ENDPOINT_SAMPLE_RATES: text });
          assert.deepEqual(Object.fromEntries(resolved.endpointSampleRates), Object.fromEntries(entries));
        },
      ),
    );
  });
});

const INTEGER_OPTIONS = [
  { option: 'flushIntervalMs', envName: 'ERGOMETER_FLUSH_INTERVAL_MS', min: 10, max: 3_600_000 },
  { option: 'maxBatchSamples', envName: 'ERGOMETER_MAX_BATCH_SAMPLES', min: 1, max: 100_000 },
  { option: 'maxQueuedSamples', envName: 'ERGOMETER_MAX_QUEUED_SAMPLES', min: 1, max: 10_000_000 },
  { option: 'sampleWindowMs', envName: 'ERGOMETER_SAMPLE_WINDOW_MS', min: 1, max: 60_000 },
] as const;

describe('property: integer options', () => {
  for (const { option, envName, min, max } of INTEGER_OPTIONS) {
    test(`${option}: accepted exactly when an integer from ${min} to ${max}`, () => {
      const candidate = fc.oneof(
        fc.integer({ min: min - 5, max: min + 5 }),
        fc.integer({ min: max - 5, max: max + 5 }),
        fc.integer({ min: -1e8, max: 1e8 }),
        fc.double({ min: min - 1, max: max + 1 }),
        fc.double(),
      );
      fc.assert(
        fc.property(candidate, fc.boolean(), (n, viaEnv) => {
          const valid = Number.isInteger(n) && n >= min && n <= max;
          const resolve = () =>
            viaEnv
              ? resolveOptions({}, { ...REQUIRED, [envName]: String(n) })
              : resolveOptions({ [option]: n }, REQUIRED);
          if (valid) assert.equal(resolve()[option], n);
          else rejects(resolve, new RegExp(`${option} \\(${envName}\\)`), new RegExp(escapeRegExp(String(n))));
        }),
      );
    });
  }
});

describe('property: names', () => {
  // service, collector, token, region, host and commit share one rule: at most 200
  // characters, no control characters (they would corrupt log lines and dashboards).
  const NAME_OPTIONS = [
    ['service', 'ERGOMETER_SERVICE'],
    ['collector', 'ERGOMETER_COLLECTOR'],
    ['token', 'ERGOMETER_TOKEN'],
    ['region', 'ERGOMETER_REGION'],
    ['host', 'ERGOMETER_HOST'],
    ['commit', 'ERGOMETER_COMMIT'],
  ] as const;
  test('a non-empty name is kept verbatim exactly when it is at most 200 characters without control characters', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...NAME_OPTIONS),
        fc.oneof(
          fc.string({ minLength: 1, maxLength: 210, unit: 'grapheme' }),
          fc.string({ minLength: 1, maxLength: 20, unit: 'binary' }),
          fc.string({ minLength: 195, maxLength: 205 }),
        ),
        fc.boolean(),
        ([option, envName], name, viaEnv) => {
          // biome-ignore lint/suspicious/noControlCharactersInRegex: that is what is tested
          const valid = name.length <= 200 && !/[\u0000-\u001f\u007f]/.test(name);
          const resolve = () =>
            viaEnv
              ? resolveOptions({}, { ...REQUIRED, [envName]: name })
              : resolveOptions({ [option]: name }, REQUIRED);
          if (valid) assert.equal(resolve()[option], name);
          else rejects(resolve, new RegExp(`${option} \\(${envName}\\)`));
        },
      ),
    );
  });
});
