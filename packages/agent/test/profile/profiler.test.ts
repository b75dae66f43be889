/**
 * The profiler end to end in a real Express app: interleaved requests to two endpoints whose
 * distinctly named functions do known, different CPU work; the profiles the `file:` collector writes
 * decode with pprof-format and carry the contract's sample types, endpoint and flag labels, and CPU
 * weights that add up to the thread's CPU time.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { type ProfileOptions, resolveOptions } from '../../src/options';
import {
  CONTINUOUS_LABEL_FRACTION,
  chooseRecorder,
  LATE_START_CPU_MICROS,
  lateStartWarning,
  Profiler,
  stopLosesCode,
} from '../../src/profile/profiler';
import { type DecodedProfile, type DecodedSample, decodePprof, startInTempDir } from './harness';

const NODE_MAJOR = Number(process.versions.node.split('.')[0]);

interface IndexLine {
  service: string;
  commit: string;
  host: string;
  metric: string;
  from: number;
  to: number;
  file: string;
}

function readProfiles(dir: string): { index: IndexLine[]; profiles: DecodedProfile[] } {
  const profilesDir = path.join(dir, 'samples.profiles');
  const index = readFileSync(path.join(profilesDir, 'index.ndjson'), 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as IndexLine);
  return { index, profiles: index.map((line) => decodePprof(readFileSync(path.join(profilesDir, line.file)))) };
}

const FIXTURE_SOURCE = path.join(__dirname, '..', '..', '..', 'test', 'profile', 'fixtures', 'profiled-express.cjs');
/** The 1-based line of the fixture that starts with `text`. */
function fixtureLine(text: string): number {
  return (
    readFileSync(FIXTURE_SOURCE, 'utf8')
      .split('\n')
      .findIndex((line) => line.startsWith(text)) + 1
  );
}

const has = (sample: DecodedSample, name: string) => sample.stack.some((frame) => frame.name === name);
const sum = (samples: DecodedSample[]) => samples.reduce((total, s) => total + s.cost, 0);

/** Both context paths where this Node.js has both: Node 24 runs the Node 20 path with --no-async-context-frame. */
const PATHS: { contextPath: string; execArgv: string[] }[] =
  NODE_MAJOR >= 24
    ? [
        { contextPath: 'async-context-frame', execArgv: [] },
        { contextPath: 'async-hooks', execArgv: ['--no-async-context-frame'] },
      ]
    : [{ contextPath: 'async-hooks', execArgv: [] }];

/**
 * Both samplers, on every version: the interrupt sampler (the default: its addon is built for the Node.js that
 * runs the tests) and V8's profiler through @datadog/pprof.
 */
const SAMPLERS = ['interrupt', 'v8'] as const;

describe('profiler in an Express app', () => {
  // Layered: agent.http() around the app's agent.express(); the inner layer's route names the samples.
  for (const { contextPath, execArgv, layered, sampler } of PATHS.flatMap((p) =>
    SAMPLERS.flatMap((sampler) => [false, true].map((layered) => ({ ...p, layered, sampler }))),
  )) {
    const layers = layered ? ', agent.http() around agent.express()' : '';
    it(`labels each stack sample with its request's endpoint and flags, weighted by CPU (${sampler} sampler, ${contextPath}${layers})`, async (t) => {
      const { app, dir } = await startInTempDir(
        t,
        {
          host: 'web-1',
          // Most requests unsampled: the profiler labels every request, sampled or not.
          sampleRate: 0.01,
          profile: { enabled: true, dutyCycle: 1, periodMs: 1500, intervalMicros: 2000, sampler },
        },
        execArgv,
        { layered },
      );
      const served = await app.load(40, 4, 4000);
      const report = await app.shutdown();
      assert.deepEqual(app.fatal, [], app.stderr);
      assert.deepEqual(report.internalErrors, []);
      assert.deepEqual(report.profilesDropped, []);
      assert.equal(report.profiling?.sampler, sampler);
      // The interrupt sampler never loads @datadog/pprof (nor starts V8's profiler).
      assert.equal(report.pprofLoaded, sampler === 'v8');
      assert.equal(report.profiling?.contextPath, contextPath);

      const { index, profiles } = readProfiles(dir);
      // One profile per 1.5 s period while the load ran, and the last one flushed by shutdown().
      assert.ok(index.length >= 2, `${index.length} profiles`);
      assert.equal(report.profilesSent, index.length);
      for (const line of index) {
        assert.deepEqual(
          { service: line.service, commit: line.commit, host: line.host, metric: line.metric },
          { service: 'shop', commit: 'c1', host: 'web-1', metric: 'cpu_ns' },
        );
        assert.ok(line.from < line.to);
      }
      for (let i = 1; i < index.length; i++) assert.equal(index[i]!.from, index[i - 1]!.to, 'windows tile');
      for (const profile of profiles) {
        assert.deepEqual(profile.sampleTypes, [
          ['samples', 'count'],
          ['cpu', 'nanoseconds'],
        ]);
      }

      const samples = profiles.flatMap((p) => p.samples);
      const heavy = samples.filter((s) => has(s, 'heavyPrimeSieve'));
      const light = samples.filter((s) => has(s, 'lightChecksum'));
      assert.ok(heavy.length >= 20, `${heavy.length} samples in heavyPrimeSieve`);
      assert.ok(light.length >= 1, `${light.length} samples in lightChecksum`);

      // The heavy function's samples belong to the heavy endpoint, never to the light one, and carry
      // the flag its handler recorded after the work (labels are read when the profile is serialized).
      const heavyEndpoints = new Map<string, number>();
      for (const s of heavy)
        heavyEndpoints.set(
          s.labels.endpoint ?? '(none)',
          (heavyEndpoints.get(s.labels.endpoint ?? '(none)') ?? 0) + s.count,
        );
      assert.equal(heavyEndpoints.get('GET /light/:id'), undefined, JSON.stringify([...heavyEndpoints]));
      const heavyLabelled = heavy.filter((s) => s.labels.endpoint === 'GET /heavy/:id');
      assert.ok(heavyLabelled.length >= 0.9 * heavy.length, JSON.stringify([...heavyEndpoints]));
      for (const s of heavyLabelled) assert.equal(s.labels['flag:ranker'], 'v2');
      for (const s of light) assert.notEqual(s.labels.endpoint, 'GET /heavy/:id');
      for (const s of light.filter((s) => s.labels.endpoint === 'GET /light/:id')) {
        assert.equal(s.labels['flag:ranker'], 'v1');
      }

      // Function identity: name, the file V8 reports (this fixture), the line where the function starts (the
      // same whichever sampler took the sample: the collector matches functions across processes by it).
      const sieveFrame = heavy[0]!.stack.find((f) => f.name === 'heavyPrimeSieve')!;
      assert.match(sieveFrame.file, /profiled-express\.cjs$/);
      assert.equal(sieveFrame.startLine, fixtureLine('function heavyPrimeSieve('));
      assert.ok(sieveFrame.line >= sieveFrame.startLine);

      // Known different work: 40 × per request, one heavy per four light requests → ~10 × the CPU.
      const heavyCpu = sum(heavy);
      const lightCpu = sum(light);
      assert.ok(heavyCpu > 3 * lightCpu, `heavy ${heavyCpu} ns vs light ${lightCpu} ns`);
      assert.equal(served.heavy * 4, served.light);

      // Weights are the thread's CPU between samples: together they are the thread CPU of the windows,
      // which the app measured around the agent's whole life (a little more: start-up, shutdown).
      const profiledCpu = sum(samples);
      const ratio = profiledCpu / report.threadCpuNs;
      t.diagnostic(
        `${index.length} profiles, ${samples.length} samples; heavyPrimeSieve ${heavy.length} samples ${heavyCpu} ns, ` +
          `lightChecksum ${light.length} samples ${lightCpu} ns; profiled CPU / thread CPU = ${ratio.toFixed(3)}`,
      );
      assert.ok(
        ratio > 0.5 && ratio <= 1.05,
        `profiles weigh ${profiledCpu} ns, the thread spent ${report.threadCpuNs} ns`,
      );
      // Everything labelled with an endpoint is one of the two.
      for (const s of samples) {
        if (s.labels.endpoint !== undefined) assert.match(s.labels.endpoint, /^GET \/(heavy|light)\/:id$/);
      }
    });
  }

  for (const sampler of SAMPLERS) {
    it(`a duty cycle below 1 records windows${sampler === 'v8' ? ' on Node 20, and samples continuously at a longer interval from Node 22 on' : ''} (${sampler} sampler)`, async (t) => {
      const { app, dir } = await startInTempDir(t, {
        profile: { enabled: true, dutyCycle: 0.25, periodMs: 800, intervalMicros: 2000, sampler },
      });
      await app.load(40, 4, 3500);
      const report = await app.shutdown();
      assert.deepEqual(app.fatal, [], app.stderr);
      assert.deepEqual(report.internalErrors, []);
      assert.equal(report.profiling?.sampler, sampler);
      // Only V8's profiler loses track of code while stopped (V8 12+): the interrupt sampler keeps no code log.
      const continuous = sampler === 'v8' && NODE_MAJOR >= 22;
      assert.equal(report.profiling?.schedule, continuous ? 'continuous' : 'windows');
      // The same labelled samples per 800 ms period either way: a 200 ms window at 2 ms labelling every request,
      // or the whole period at 3.2 ms labelling two fifths of them (2 ms × 0.4 / 0.25; Node 24), or at 8 ms
      // labelling every request (Node 22's async-hooks path).
      const acf = report.profiling?.contextPath === 'async-context-frame';
      assert.equal(report.profiling?.samplingIntervalMicros, continuous ? (acf ? 3200 : 8000) : 2000);
      assert.equal(report.profiling?.labelFraction, continuous && acf ? 0.4 : 1);
      const { index, profiles } = readProfiles(dir);
      assert.ok(index.length >= 3, `${index.length} profiles`);
      // All but the last (cut short by shutdown): a window of 200 ms, or the whole 800 ms period.
      for (const line of index.slice(0, -1)) {
        const lengthMs = line.to - line.from;
        if (continuous) assert.ok(lengthMs >= 750 && lengthMs < 1500, `${lengthMs} ms`);
        else assert.ok(lengthMs >= 180 && lengthMs < 600, `${lengthMs} ms`);
      }
      for (let i = 1; i < index.length; i++) {
        const gapMs = index[i]!.from - index[i - 1]!.to;
        if (continuous) assert.equal(gapMs, 0, 'continuous windows tile');
        else assert.ok(gapMs >= 0, 'windows do not overlap');
      }
      const heavy = profiles.flatMap((p) => p.samples).filter((s) => has(s, 'heavyPrimeSieve'));
      assert.ok(heavy.length >= 5, `${heavy.length} samples in heavyPrimeSieve`);
    });
  }

  for (const sampler of SAMPLERS) {
    it(`dense windows: a window takes its period's samples at windowIntervalMicros, in as much less time (${sampler} sampler)`, async (t) => {
      // 200 ms of samples at 8 ms a period (25), taken at 2 ms: a 50 ms window.
      const { app, dir } = await startInTempDir(t, {
        profile: {
          enabled: true,
          dutyCycle: 0.25,
          periodMs: 800,
          intervalMicros: 8000,
          windowIntervalMicros: 2000,
          schedule: 'windows',
          sampler,
        },
      });
      await app.load(40, 4, 4000);
      const report = await app.shutdown();
      assert.deepEqual(app.fatal, [], app.stderr);
      assert.deepEqual(report.internalErrors, []);
      assert.deepEqual(
        [report.profiling?.schedule, report.profiling?.samplingIntervalMicros, report.profiling?.windowMs],
        ['windows', 2000, 50],
      );
      const { index, profiles } = readProfiles(dir);
      assert.ok(index.length >= 3, `${index.length} profiles`);
      // All but the last (cut short by shutdown): 50 ms windows holding about a period's 25 samples.
      for (const [i, line] of index.slice(0, -1).entries()) {
        const lengthMs = line.to - line.from;
        assert.ok(lengthMs >= 40 && lengthMs < 300, `${lengthMs} ms`);
        const samples = profiles[i]?.samples.length ?? 0;
        assert.ok(samples >= 8 && samples <= 60, `${samples} samples in a ${lengthMs} ms window`);
      }
    });
  }

  it('at the defaults a window is 1.5 s a minute at 400 Hz: the samples of a tenth of the time at 100 Hz', async (t) => {
    const { app } = await startInTempDir(t, { profile: { enabled: true, schedule: 'windows' } });
    const report = await app.shutdown();
    assert.deepEqual(app.fatal, [], app.stderr);
    assert.deepEqual([report.profiling?.samplingIntervalMicros, report.profiling?.windowMs], [2500, 1500]);
    // windowIntervalMicros at intervalMicros: windows of dutyCycle × periodMs, as before dense windows.
    const { app: sparse } = await startInTempDir(t, {
      profile: { enabled: true, schedule: 'windows', windowIntervalMicros: 10_000 },
    });
    const sparseReport = await sparse.shutdown();
    assert.deepEqual(
      [sparseReport.profiling?.samplingIntervalMicros, sparseReport.profiling?.windowMs],
      [10_000, 6000],
    );
  });

  // Regression: the agent's background work started at the end of a labelled request (a batch flush, its
  // serialization and write) ran with that request's profiler labels, so the export showed up in the
  // endpoint's profile (the demo's profile endpoint "regressed" in zlib's processChunk).
  for (const { contextPath, execArgv } of PATHS) {
    it(`the agent's own export work is never labelled as a request's (${contextPath})`, async (t) => {
      const { app, dir } = await startInTempDir(
        t,
        {
          sampleRate: 1,
          // A batch per sample: every request's end schedules a flush.
          maxBatchSamples: 1,
          profile: { enabled: true, dutyCycle: 1, periodMs: 1500, intervalMicros: 200 },
        },
        execArgv,
      );
      await app.load(60, 4, 3000);
      const report = await app.shutdown();
      assert.deepEqual(app.fatal, [], app.stderr);
      assert.equal(report.profiling?.contextPath, contextPath);
      const samples = readProfiles(dir).profiles.flatMap((p) => p.samples);
      // The export's own callbacks (flush, serialization, write), not the calls at a request's end that
      // queue the sample and schedule them (below agent.js: that moment is the request's bookkeeping).
      const isExport = (s: DecodedSample) =>
        s.stack.some((f) => /[\\/]agent[\\/]dist[\\/]src[\\/]export[\\/]/.test(f.file)) &&
        !s.stack.some((f) => /[\\/]agent[\\/]dist[\\/]src[\\/]agent\.js$/.test(f.file));
      const exporting = samples.filter(isExport);
      // The export did run while the profiler sampled (or this test proves nothing)...
      assert.ok(exporting.length >= 3, `${exporting.length} samples in the agent's export code`);
      // ...and none of it is charged to an endpoint.
      const labelled = exporting.filter((s) => s.labels.endpoint !== undefined);
      assert.deepEqual(
        labelled.map((s) => `${s.labels.endpoint}: ${s.stack.map((f) => f.name).join(' < ')}`),
        [],
      );
    });
  }

  // Regression: on the async-hooks path the label storage, once run, kept Node's async_hooks init hook on
  // for every later promise of the process, so between windows the profiler cost as much as while
  // recording (+20% CPU per request at the defaults against +27% recording all the time, Node 20).
  // On Node 24 labels follow requests through AsyncContextFrame: there the hooks must never be on at all.
  for (const sampler of SAMPLERS) {
    it(`between windows the label hooks are off, and on again while recording; never on with AsyncContextFrame (${sampler} sampler)`, async (t) => {
      const { app } = await startInTempDir(t, {
        sampleRate: 0,
        profile: { enabled: true, dutyCycle: 0.25, periodMs: 400, intervalMicros: 2000, sampler },
      });
      const seen = { recording: 0, between: 0, hooksOnBetween: 0, hooksOffRecording: 0 };
      const load = app.load(30, 2, 3000);
      const startedMs = Date.now();
      while (Date.now() - startedMs < 3000) {
        const state = (await app.getJson('/profiling')) as { recording: boolean; labelHooks: boolean };
        if (state.recording) {
          seen.recording++;
          if (!state.labelHooks) seen.hooksOffRecording++;
        } else {
          seen.between++;
          if (state.labelHooks) seen.hooksOnBetween++;
        }
        await new Promise((resolve) => setTimeout(resolve, 15));
      }
      await load;
      const report = await app.shutdown();
      assert.deepEqual(app.fatal, [], app.stderr);
      assert.equal(report.profiling?.contextPath, NODE_MAJOR >= 24 ? 'async-context-frame' : 'async-hooks');
      if (report.profiling?.schedule === 'windows') {
        assert.ok(seen.recording > 0 && seen.between > 0, JSON.stringify(seen));
        assert.equal(seen.hooksOnBetween, 0, JSON.stringify(seen));
        const hooksExpected = report.profiling.contextPath === 'async-hooks';
        assert.equal(seen.hooksOffRecording, hooksExpected ? 0 : seen.recording, JSON.stringify(seen));
      } else {
        assert.equal(report.profiling?.contextPath, NODE_MAJOR >= 24 ? 'async-context-frame' : 'async-hooks');
        assert.equal(seen.between, 0, `continuous: always recording (${JSON.stringify(seen)})`);
        const hooksExpected = report.profiling?.contextPath === 'async-hooks';
        assert.equal(seen.hooksOffRecording, hooksExpected ? 0 : seen.recording, JSON.stringify(seen));
      }
    });
  }

  it('schedule: "windows" records windows on every version (for measuring the cost), "continuous" never stops', async (t) => {
    for (const schedule of ['windows', 'continuous'] as const) {
      const { app } = await startInTempDir(t, {
        profile: { enabled: true, dutyCycle: 0.25, periodMs: 800, intervalMicros: 2000, schedule },
      });
      await app.load(10, 2, 1000);
      const report = await app.shutdown();
      assert.deepEqual(app.fatal, [], app.stderr);
      assert.equal(report.profiling?.schedule, schedule);
      // Continuous: two fifths labelled at 3.2 ms with AsyncContextFrame, else every request at 8 ms.
      const traded = schedule === 'continuous' && report.profiling?.contextPath === 'async-context-frame';
      assert.equal(report.profiling?.samplingIntervalMicros, schedule === 'windows' ? 2000 : traded ? 3200 : 8000);
      assert.equal(report.profiling?.labelFraction, traded ? 0.4 : 1);
    }
  });

  it('labels profile.labelFraction of the requests, each drawn once however many layers see it', async (t) => {
    for (const { contextPath, execArgv, layered } of PATHS.flatMap((p) =>
      [false, true].map((layered) => ({ ...p, layered })),
    )) {
      const { app, dir } = await startInTempDir(
        t,
        {
          sampleRate: 0.01,
          profile: { enabled: true, dutyCycle: 1, periodMs: 1500, intervalMicros: 2000, labelFraction: 0.5 },
        },
        execArgv,
        { layered },
      );
      await app.load(40, 4, 4000);
      const report = await app.shutdown();
      assert.deepEqual(app.fatal, [], app.stderr);
      assert.deepEqual(report.internalErrors, []);
      assert.equal(report.profiling?.labelFraction, 0.5);
      const heavy = readProfiles(dir)
        .profiles.flatMap((p) => p.samples)
        .filter((s) => has(s, 'heavyPrimeSieve'));
      const labelled = heavy.filter((s) => s.labels.endpoint === 'GET /heavy/:id');
      // The rest are unlabelled, never another endpoint's.
      assert.deepEqual(
        heavy.filter((s) => s.labels.endpoint !== undefined && s.labels.endpoint !== 'GET /heavy/:id').length,
        0,
      );
      // Hundreds of heavy requests, one or two samples each: half of the cost labelled, give or take a few
      // percent. A second layer drawing again would label three quarters.
      const share = sum(labelled) / sum(heavy);
      const count = (samples: DecodedSample[]) => samples.reduce((total, s) => total + s.count, 0);
      const where = `${contextPath}${layered ? ', two layers' : ''}: ${count(labelled)} of ${count(heavy)} heavy samples`;
      t.diagnostic(`${where}, ${(share * 100).toFixed(1)}% of their cost labelled`);
      assert.ok(count(heavy) >= 300, where);
      assert.ok(share > 0.38 && share < 0.62, `${where}, ${(share * 100).toFixed(1)}% of their cost labelled`);
    }
  });

  it('on the continuous schedule samples 1 / labelFraction as often, to keep the labelled samples of its duty cycle', () => {
    const profile = (options: ProfileOptions) =>
      resolveOptions({ service: 'x', collector: 'file:./x.ndjson', profile: options }, {}).profile;
    const acf = new Profiler(profile({}), () => {}).contextPath === 'async-context-frame';
    const cases: [ProfileOptions, { interval: number; fraction: number }][] = [
      // The defaults on Node 24: two fifths of the requests, 2.5 × as often as a tenth of the time at 100 Hz. On
      // the async-hooks path (Node 20 and 22) every request, at a tenth of the rate.
      [
        { schedule: 'continuous' },
        acf ? { interval: 40_000, fraction: CONTINUOUS_LABEL_FRACTION } : { interval: 100_000, fraction: 1 },
      ],
      // A duty cycle above the default fraction: label that share, at intervalMicros.
      [
        { schedule: 'continuous', dutyCycle: 0.5 },
        acf ? { interval: 10_000, fraction: 0.5 } : { interval: 20_000, fraction: 1 },
      ],
      [
        { schedule: 'continuous', dutyCycle: 1 },
        { interval: 10_000, fraction: 1 },
      ],
      // Given explicitly it is kept; the interval never goes below intervalMicros.
      [
        { schedule: 'continuous', labelFraction: 0.05 },
        { interval: 10_000, fraction: 0.05 },
      ],
      [
        { schedule: 'continuous', labelFraction: 0.5 },
        { interval: 50_000, fraction: 0.5 },
      ],
      // Windows: the window is the subset; every request in it is labelled unless told otherwise. Dense: the
      // period's samples at windowIntervalMicros (2.5 ms), or at intervalMicros when that is sparser or asked for.
      [{ schedule: 'windows' }, { interval: 2500, fraction: 1 }],
      [
        { schedule: 'windows', labelFraction: 0.5 },
        { interval: 2500, fraction: 0.5 },
      ],
      [
        { schedule: 'windows', windowIntervalMicros: 10_000 },
        { interval: 10_000, fraction: 1 },
      ],
      [
        { schedule: 'windows', intervalMicros: 1000 },
        { interval: 1000, fraction: 1 },
      ],
    ];
    for (const [options, expected] of cases) {
      const profiler = new Profiler(profile(options), () => {});
      assert.deepEqual(
        { interval: profiler.samplingIntervalMicros, fraction: profiler.labelFraction },
        expected,
        JSON.stringify(options),
      );
    }
  });

  // Regression for the schedule choice: on V8 12+ (Node 22, 24) a profiler started after V8 compiled a function by
  // on-stack replacement charges that function's samples to its caller (docs/agent.md, "How the duty cycle is
  // realised"). With `schedule: "windows"` forced on Node 24 this test fails: rareCaller, which does nothing
  // itself, gets most of the cost.
  it('charges a long loop first run between two windows to itself, not to its caller, at the default schedule', async (t) => {
    const { app, dir } = await startInTempDir(
      t,
      { profile: { enabled: true, dutyCycle: 0.25, periodMs: 800, intervalMicros: 2000 } },
      // Without inlining, so that every function has frames of its own (see docs/agent.md, "Inlining").
      ['--no-turbo-inlining', '--no-maglev-inlining'],
    );
    // First calls while nothing records (between two windows), where there are windows: V8 optimizes rareLoop
    // by OSR in them. Continuous recording has no such moment.
    const deadline = Date.now() + 5000;
    for (;;) {
      const profiling = (await app.getJson('/profiling')) as { recording: boolean; schedule: string };
      if (profiling.schedule !== 'windows' || !profiling.recording || Date.now() >= deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (let i = 0; i < 3; i++) assert.equal(await app.get(`/rare/${i}`), 200);
    const startedMs = Date.now();
    for (let i = 3; Date.now() - startedMs < 3000; i++) assert.equal(await app.get(`/rare/${i}`), 200);
    const report = await app.shutdown();
    assert.deepEqual(app.fatal, [], app.stderr);
    const rare = readProfiles(dir)
      .profiles.flatMap((p) => p.samples)
      .filter((s) => s.labels.endpoint === 'GET /rare/:id' && has(s, 'rareCaller'));
    const leafCost = (name: string) => sum(rare.filter((s) => s.stack[0]?.name === name));
    const share = leafCost('rareLoop') / sum(rare);
    assert.ok(rare.length >= 20, `${rare.length} samples under rareCaller`);
    assert.ok(
      share >= 0.9,
      `rareLoop's self share of rareCaller's cost is ${(share * 100).toFixed(0)}% (rareCaller self ` +
        `${((leafCost('rareCaller') / sum(rare)) * 100).toFixed(0)}%), schedule ${report.profiling?.schedule}`,
    );
  });

  // On Node 20 a window that recorded while the app warmed up left the process +1.6–2.1% CPU per request for good,
  // one after 18 s of load nothing (docs/agent.md, "Not while the process warms up"): the first period has no window.
  it('opens no window in the first period, and one in the second', async () => {
    const periodMs = 600;
    const options = resolveOptions(
      {
        service: 'x',
        collector: 'file:./x.ndjson',
        profile: { enabled: true, schedule: 'windows', dutyCycle: 0.25, periodMs, intervalMicros: 2000 },
      },
      {},
    ).profile;
    const profiler = new Profiler(options, () => {});
    const startedMs = performance.now();
    assert.equal(profiler.start(), true);
    try {
      // Timers never fire early: until periodMs has passed, nothing may record.
      let checks = 0;
      while (performance.now() - startedMs < periodMs - 5) {
        assert.equal(profiler.active, false, `recording ${(performance.now() - startedMs).toFixed(0)} ms after start`);
        checks++;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      // The old schedule's window opened within the first 450 ms: a few checks spread over the period see it.
      assert.ok(checks >= 3, `${checks} checks`);
      const deadlineMs = startedMs + 2 * periodMs + 5000;
      while (!profiler.active && performance.now() < deadlineMs) await new Promise((resolve) => setTimeout(resolve, 5));
      assert.equal(profiler.active, true, 'a window opens in the second period');
    } finally {
      await profiler.shutdown();
    }
  });

  it("profile.sampler: auto takes the interrupt sampler where it runs from V8 12 on, else V8's profiler and says why", () => {
    const missing = () => ({ sampler: null, loadError: new Error('not built for ABI 999') }) as const;
    const auto = chooseRecorder('auto');
    if (NODE_MAJOR >= 22) {
      assert.equal(auto.recorder.sampler, 'interrupt');
      assert.equal(auto.fallback, undefined);
    } else {
      // V8 11: V8's profiler records windows there, for less than the interrupt sampler cost.
      assert.equal(auto.recorder.sampler, 'v8');
      assert.match(auto.fallback ?? '', /^V8 11\..* records windows with its own profiler/);
    }
    assert.equal(chooseRecorder('auto', undefined, '11.3.244.8-node.33').recorder.sampler, 'v8');
    // Asked for by name, the interrupt sampler runs on every version; labels through async_hooks without
    // AsyncContextFrame.
    const named = chooseRecorder('interrupt');
    assert.equal(named.recorder.sampler, 'interrupt');
    assert.equal(named.recorder.contextPath, NODE_MAJOR >= 24 ? 'async-context-frame' : 'async-hooks');
    const fallback = chooseRecorder('auto', missing, '13.6.233.17-node.37');
    assert.equal(fallback.recorder.sampler, 'v8');
    assert.equal(fallback.fallback, 'not built for ABI 999');
    assert.equal(chooseRecorder('v8').recorder.sampler, 'v8');
    // Asked for by name and missing: the profiler does not start (the agent warns and runs on without it).
    assert.throws(() => chooseRecorder('interrupt', missing), /not built for ABI 999/);
  });

  it("stops V8's profiler between windows only where a restart keeps track of compiled code (V8 11)", () => {
    assert.equal(stopLosesCode('11.3.244.8-node.33'), false);
    assert.equal(stopLosesCode('12.4.254.21-node.57'), true);
    assert.equal(stopLosesCode('13.6.233.17-node.37'), true);
  });

  it('warns when the profiler starts after seconds of CPU, where V8 12+ cannot see code optimized before', () => {
    assert.match(lateStartWarning(4_000_000, '12.4.254.21-node.57') ?? '', /used 4\.0 s of CPU.*Start the agent first/);
    assert.equal(lateStartWarning(4_000_000, '11.3.244.8-node.33'), undefined);
    assert.equal(lateStartWarning(LATE_START_CPU_MICROS - 1, '13.6.233.17-node.37'), undefined);
  });

  it("a process that starts V8's profiler after seconds of work gets the warning once on Node 22+, one that starts it first none, the interrupt sampler none", async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-late-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const run = (burnCpuMicros: number, sampler = 'v8') => {
      const script = `
        const burnUntil = ${burnCpuMicros};
        const used = () => { const u = process.cpuUsage(); return u.user + u.system; };
        let x = 0;
        while (used() < burnUntil) for (let i = 0; i < 1e5; i++) x += Math.sqrt(i);
        const { start } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'src', 'index.js'))});
        const agent = start({ service: 'late', commit: 'c1', collector: 'file:${path.join(dir, 'samples.ndjson')}',
          exitFlushTimeoutMs: 0, profile: { enabled: true, sampler: '${sampler}' } });
        agent.shutdown().then(() => process.exit(0));`;
      const { NODE_TEST_CONTEXT: _runner, ...env } = process.env;
      return spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8', timeout: 60_000 });
    };
    const late = run(LATE_START_CPU_MICROS + 300_000);
    const early = run(0);
    for (const r of [late, early]) assert.equal(r.status, 0, r.stderr);
    const warnings = (stderr: string) => stderr.match(/ERGOMETER_PROFILER_STARTED_LATE/g)?.length ?? 0;
    assert.equal(warnings(late.stderr), NODE_MAJOR >= 22 ? 1 : 0, late.stderr);
    assert.equal(warnings(early.stderr), 0, early.stderr);
    const lateInterrupt = run(LATE_START_CPU_MICROS + 300_000, 'interrupt');
    assert.equal(lateInterrupt.status, 0, lateInterrupt.stderr);
    assert.doesNotMatch(lateInterrupt.stderr, /ERGOMETER_PROFILER_(STARTED_LATE|UNAVAILABLE)/);
  });

  it('sends the window so far when the process gets SIGTERM (exit flush)', async (t) => {
    const { app, dir } = await startInTempDir(t, {
      exitFlushTimeoutMs: 5000,
      // A period far longer than the test: only the exit flush can write this profile.
      profile: { enabled: true, dutyCycle: 1, periodMs: 600_000, intervalMicros: 2000 },
    });
    await app.load(10, 2, 1000);
    assert.equal(await app.terminate(), 'SIGTERM', 'the process ends as it would without the agent');
    const { index, profiles } = readProfiles(dir);
    assert.equal(index.length, 1, app.stderr);
    assert.ok(
      profiles[0]!.samples.some((s) => has(s, 'heavyPrimeSieve') && s.labels.endpoint === 'GET /heavy/:id'),
      'the heavy endpoint was profiled',
    );
  });

  it('loads nothing of the profiler when it is off', async (t) => {
    const { app, dir } = await startInTempDir(t, {
      sampleRate: 1,
    });
    await app.load(3);
    const report = await app.shutdown();
    assert.deepEqual(app.fatal, [], app.stderr);
    assert.equal(report.pprofLoaded, false, '@datadog/pprof is not in require.cache');
    assert.equal(report.profiling, null);
    assert.equal(existsSync(path.join(dir, 'samples.profiles')), false);
    assert.ok(existsSync(path.join(dir, 'samples.ndjson')), 'the samples were written');
  });

  it('profiles no process when processFraction is 0', async (t) => {
    const { app } = await startInTempDir(t, {
      profile: { enabled: true, processFraction: 0 },
    });
    await app.load(2);
    const report = await app.shutdown();
    assert.equal(report.pprofLoaded, false);
    assert.equal(report.profiling, null);
  });
});

// A request handled inside another request's context (an in-process sub-request: Fastify's inject()) finds the
// outer request's labels as the profiler's current context. It gets labels of its own, and the outer request's
// labels keep naming the outer endpoint.
describe('profiler labels of an in-process sub-request', () => {
  const FIXTURE = path.join(__dirname, '..', '..', '..', 'test', 'profile', 'fixtures', 'subrequest.cjs');
  for (const { contextPath, execArgv } of PATHS) {
    for (const sampleRate of [0, 1]) {
      it(`are its own, not the outer request's (${contextPath}, sampleRate ${sampleRate})`, (t) => {
        const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-subrequest-'));
        t.after(() => rmSync(dir, { recursive: true, force: true }));
        const { NODE_TEST_CONTEXT: _runner, ...env } = process.env;
        const out = execFileSync(process.execPath, [...execArgv, FIXTURE], {
          env: { ...env, FIXTURE_COLLECTOR: path.join(dir, 'samples.ndjson'), FIXTURE_SAMPLE_RATE: String(sampleRate) },
          encoding: 'utf8',
          timeout: 30_000,
        });
        assert.deepEqual(JSON.parse(out), {
          body: 'outer+inner',
          recording: true,
          labelled: true,
          innerHasOwnLabels: true,
          outerKeptItsLabels: true,
          outerEndpoint: 'GET /outer',
          innerEndpoint: 'GET /inner/:id',
        });
      });
    }
  }
});
