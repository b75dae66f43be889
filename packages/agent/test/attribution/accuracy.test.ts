/**
 * Attribution accuracy: does the per-request number mean what it says under
 * concurrency?
 *
 * Three endpoints with known, very different CPU work (some after awaits,
 * timers, setImmediate, stream and socket callbacks) are measured solo
 * (concurrency 1) and under concurrency 64 with all endpoints mixed, in
 * alternating rounds, while background work runs on the same thread outside
 * any request. Ours must give each endpoint the same cost in both conditions;
 * the naive "counter at start vs end" must not — it is kept here to show why.
 *
 * This machine measures `cpu_ns`, and the CPU time of the *same* code differs
 * between phases: caches and frequency, a noisy VM neighbour, and garbage
 * collection, whose scavenges cost more with 64 requests' objects alive. Two
 * things follow:
 * - The fixture times its known work inline in each phase, and we compare load
 *   against solo after scaling by that measured speed ratio (1.0 with hardware
 *   instruction counters). The ratio is printed and bounded, so a test that
 *   passes only through a wild correction fails.
 * - What remains is physical, and it depends on the code: the naive measure of
 *   the synchronous endpoint — exact for it, since nothing can interleave with
 *   it — moves by 2–14% between phases from run to run on this 2-vCPU VM, while
 *   hashing-heavy code moves the other way by a few percent. A 5% bound on
 *   solo-vs-load real CPU time would test the VM, not the agent, and fail at
 *   random in CI. So:
 *   - the 5% target is asserted exactly, to the unit, by exact.test.ts, with a
 *     deterministic counter (the role instruction counters play);
 *   - here, on real CPU time, a drift-free 5% check: within each phase, our cost
 *     of the synchronous endpoint must track its ground truth (check 3b);
 *   - solo vs load is bounded at 20%, which still separates attribution from the
 *     naive measure (off by 2–100× here), and the benchmark reports the figures.
 *     For the synchronous endpoint the load figure is corrected by its ground
 *     truth instead of the known-work speed (see correctedLoad).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type EndpointAccuracy, measureAttributionAccuracy, speedCorrectedLoadCost } from './harness';

/** Solo vs load on real CPU time; see the header for why not 5% here. */
const TOLERANCE = 0.2;

test('each endpoint costs the same solo and under concurrency 64; the naive measure does not', {
  timeout: 180_000,
}, async () => {
  const result = await measureAttributionAccuracy({
    rounds: 3,
    soloRequestsPerEndpoint: 60,
    loadRequests: 600,
    concurrency: 64,
    warmupRequests: 600,
  });
  const report = result.endpoints.map((e) => ({
    endpoint: e.endpoint,
    samples: `${e.samples.solo}/${e.samples.load}`,
    soloUs: (e.attributed.solo / 1000).toFixed(0),
    loadUs: (e.attributed.load / 1000).toFixed(0),
    speedRatio: (e.known.load / e.known.solo).toFixed(3),
    correctedLoadUs: (speedCorrectedLoadCost(e) / 1000).toFixed(0),
    knownSoloUs: (e.known.solo / 1000).toFixed(0),
    naiveSoloUs: (e.naive.solo / 1000).toFixed(0),
    naiveLoadUs: (e.naive.load / 1000).toFixed(0),
  }));
  console.table(report);
  console.log(
    `attributed share of thread CPU under load: ${(result.loadAttributedShareOfThreadCpu * 100).toFixed(1)}%`,
  );

  // Load cost corrected for how the machine itself moved between phases, with
  // the best control each endpoint has: for the synchronous one its ground
  // truth (the naive measure, exact for it), for the others the speed of their
  // known work. Light requests really do cost 10–25% more CPU under this mixed
  // load on this VM (GC with 64 requests alive, caches), and the known-work
  // speed does not see that; its ground truth does. The ground truth's move is
  // read from medians, as in 3b below: its means also carry the GC pauses that
  // land in the naive middleware's extra gap (seen on Node 24: naive mean +28%
  // under load, ours +10%, which made the corrected light cost 14% too low).
  const correctedLoad = (e: EndpointAccuracy) =>
    e === result.endpoints[0]
      ? (e.attributed.load * e.median.naive.solo) / e.median.naive.load
      : speedCorrectedLoadCost(e);

  for (const e of result.endpoints) {
    assert.ok(
      e.samples.solo >= 100 && e.samples.load >= 100,
      `${e.endpoint}: too few samples ${JSON.stringify(e.samples)}`,
    );
    const speedRatio = e.known.load / e.known.solo;
    assert.ok(
      speedRatio > 0.7 && speedRatio < 1.3,
      `${e.endpoint}: machine speed changed too much between phases (${speedRatio})`,
    );

    // 1. Same cost solo and under load.
    const error = correctedLoad(e) / e.attributed.solo - 1;
    assert.ok(
      Math.abs(error) < TOLERANCE,
      `${e.endpoint}: under load ${(error * 100).toFixed(1)}% off its solo cost (${JSON.stringify(report)})`,
    );
    // 2. Every request is charged at least its own known work, in both phases.
    assert.ok(e.attributed.solo >= e.known.solo, `${e.endpoint}: solo cost below its own known work`);
    assert.ok(e.attributed.load >= e.known.load, `${e.endpoint}: load cost below its own known work`);
  }
  // 3. The naive measure is right only for an endpoint that never waits (light:
  //    nothing else can run in the middle of it) and wrong by far more than the
  //    tolerance for those that wait: it charges them everything that ran meanwhile.
  const [lightNaive, ...waiting] = result.endpoints;
  for (const e of waiting) {
    assert.ok(e.naive.load > 2 * e.naive.solo, `${e.endpoint}: expected the naive measure to blow up under load`);
  }
  // 3b. For that synchronous endpoint the naive measure is ground truth in both
  //     phases, so ours must move with it: a within-phase ratio, free of machine
  //     drift, held to the 5% target on real CPU time. (Ours reads a little less:
  //     the naive middleware starts earlier, before the agent's adapter.) Medians,
  //     not means: one GC pause that lands in that gap — in the naive figure, not
  //     in ours — moves a mean over ~180 solo requests by 5–10% (seen in CI: 0.859
  //     solo vs 0.953 under load), and says nothing about attribution.
  const trackSolo = lightNaive!.median.attributed.solo / lightNaive!.median.naive.solo;
  const trackLoad = lightNaive!.median.attributed.load / lightNaive!.median.naive.load;
  console.log(
    `synchronous endpoint, median ours/ground truth: ${trackSolo.toFixed(3)} solo, ${trackLoad.toFixed(3)} load`,
  );
  assert.ok(
    Math.abs(trackLoad / trackSolo - 1) < 0.05,
    `synchronous endpoint: median ours/ground truth ${trackSolo.toFixed(3)} solo vs ${trackLoad.toFixed(3)} under load`,
  );

  // 4. The endpoints' cost ratios match between conditions.
  const [light, medium, heavy] = result.endpoints;
  for (const e of [medium!, heavy!]) {
    const soloRatio = e.attributed.solo / light!.attributed.solo;
    const loadRatio = correctedLoad(e) / correctedLoad(light!);
    assert.ok(
      Math.abs(loadRatio / soloRatio - 1) < TOLERANCE,
      `${e.endpoint}/light ratio: solo ${soloRatio.toFixed(2)} vs load ${loadRatio.toFixed(2)}`,
    );
  }
  // 5. Nothing is charged twice: the samples never add up to more CPU than the thread used.
  assert.ok(result.loadAttributedShareOfThreadCpu < 1, 'attributed more CPU than the thread used');
  assert.ok(result.loadAttributedShareOfThreadCpu > 0.2, 'attributed implausibly little of the thread CPU');
});
