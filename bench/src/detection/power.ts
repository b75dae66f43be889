/**
 * Power of the rollout comparison against the injected change and the sample size, next to the
 * oracle: the most powerful test for a multiplicative shift of log-normal costs with known σ (a
 * z-test on mean log-cost), which no real detector can beat. Costs are log-normal σ = 0.5, the
 * comparison is the one the detectors make (ratio of mean cost, delta method; alpha 0.01), and
 * "alert" also applies the default 1% minimum effect.
 */
import { DEFAULT_DETECTOR_CONFIG, normalCdf, normalQuantile, ratioOfMeans, rolloutLook, seededRandom } from 'ergometer';
import type { BenchTable } from '../report';

const SIGMA = 0.5;
const WINDOW_MS = DEFAULT_DETECTOR_CONFIG.rolloutWindowMs;
/**
 * The rollout test is group-sequential (rollout.ts): six looks, the final one (6 h) at α × 0.9, the
 * five interim ones at α × 0.02 each. The power table is that of the final look.
 */
const ALPHA = Number(
  (DEFAULT_DETECTOR_CONFIG.alpha * (rolloutLook(WINDOW_MS, WINDOW_MS)?.alphaShare ?? 1)).toPrecision(6),
);
/** The looks: minutes after the rollout and the α each may spend. */
const LOOKS = [32, 16, 8, 4, 2, 1].map((divisor) => {
  const look = rolloutLook(WINDOW_MS / divisor, WINDOW_MS);
  return {
    minutes: WINDOW_MS / divisor / 60_000,
    alpha: Number((DEFAULT_DETECTOR_CONFIG.alpha * (look?.alphaShare ?? 1)).toPrecision(6)),
  };
});

function drawMoments(random: () => number, n: number, factor: number): { n: number; sum: number; sum2: number } {
  let sum = 0;
  let sum2 = 0;
  for (let i = 0; i < n; i += 2) {
    // Box–Muller gives two normals per pair of uniforms.
    const r = Math.sqrt(-2 * Math.log(1 - random()));
    const theta = 2 * Math.PI * random();
    for (const z of [r * Math.cos(theta), r * Math.sin(theta)]) {
      const x = factor * Math.exp(SIGMA * z);
      sum += x;
      sum2 += x * x;
    }
  }
  return { n: n + (n % 2), sum, sum2 };
}

/** Samples per arm the oracle needs for `power` at `alpha` (two-sided) for a change `pct`. */
function oracleSamples(pct: number, power: number): number {
  const z = normalQuantile(1 - ALPHA / 2) + normalQuantile(power);
  return Math.ceil(2 * ((z * SIGMA) / Math.log(1 + pct / 100)) ** 2);
}

/** The second table of this benchmark, filled by {@link benchDetectionPower}. */
let timeToAlert: BenchTable | undefined;

/** Time from rollout to alert, derived from the same power arithmetic (run after benchDetectionPower). */
export async function benchTimeToAlert(): Promise<BenchTable> {
  if (!timeToAlert) await benchDetectionPower();
  return timeToAlert as BenchTable;
}

export async function benchDetectionPower(): Promise<BenchTable> {
  const quick = process.env.BENCH_QUICK === '1';
  const repetitions = quick ? 40 : 200;
  const effects = [0, 0.5, 1, 2, 5, 10];
  const sizes = [5_000, 20_000, 50_000, 100_000];
  const random = seededRandom(20261127);
  const rows: (string | number)[][] = [];
  for (const n of sizes) {
    const row: (string | number)[] = [n.toLocaleString('en-US')];
    for (const pct of effects) {
      let significant = 0;
      let alerted = 0;
      for (let r = 0; r < repetitions; r++) {
        const estimate = ratioOfMeans(drawMoments(random, n, 1), drawMoments(random, n, 1 + pct / 100));
        if (estimate && estimate.pValue < ALPHA) {
          significant++;
          if (estimate.changePct >= 1) alerted++;
        }
      }
      row.push(`${((100 * significant) / repetitions).toFixed(0)}% / ${((100 * alerted) / repetitions).toFixed(0)}%`);
    }
    rows.push(row);
  }
  await new Promise((resolve) => setImmediate(resolve));
  // Sample size the detector's test needs for 90% power at 2%: the same formula with the
  // coefficient of variation of the cost (what the mean's variance depends on) in place of σ.
  const cv = Math.sqrt(Math.exp(SIGMA * SIGMA) - 1);
  const z = normalQuantile(1 - ALPHA / 2) + normalQuantile(0.9);
  const needed = Math.ceil(2 * ((z * cv) / Math.log(1.02)) ** 2);
  const oracle = oracleSamples(2, 0.9);
  // Time to alert after a rollout: a canary compares both commits as traffic arrives, and the rollout
  // test looks at fixed times. The alert comes at the first look whose power (with its share of α)
  // reaches 90%, given the samples each side has by then. Per endpoint: requests/s × sample rate.
  const lookPower = (pct: number, n: number, alpha: number) => {
    const se = cv * Math.sqrt(2 / n);
    const needed = Math.max(normalQuantile(1 - alpha / 2) * se, Math.log(1.01));
    return normalCdf((Math.log(1 + pct / 100) - needed) / se);
  };
  const timeRows: (string | number)[][] = [];
  for (const pct of [1, 2, 5, 10]) {
    const n = Math.ceil(2 * ((z * cv) / Math.log(1 + pct / 100)) ** 2);
    const row: (string | number)[] = [`+${pct}%`, n.toLocaleString('en-US')];
    for (const samplesPerSecond of [1, 10, 100]) {
      // A 50/50 canary: each side gets half.
      const perSide = (minutes: number) => (samplesPerSecond / 2) * minutes * 60;
      const first = LOOKS.find((look) => lookPower(pct, perSide(look.minutes), look.alpha) >= 0.9);
      const last = LOOKS[LOOKS.length - 1] as (typeof LOOKS)[number];
      row.push(
        first
          ? `${first.minutes < 60 ? `${Math.floor(first.minutes)} min` : `${first.minutes / 60} h`}`
          : `not within 6 h (${(100 * lookPower(pct, perSide(last.minutes), last.alpha)).toFixed(0)}% at 6 h)`,
      );
    }
    timeRows.push(row);
  }
  const example = LOOKS.find((look) => lookPower(2, 5 * look.minutes * 60, look.alpha) >= 0.9);
  timeToAlert = {
    title: 'Time from rollout to alert',
    description:
      `When the alert arrives (90% power, log-normal σ = 0.5 costs) for one endpoint in a 50/50 canary, given the sampled ` +
      'requests per second of that endpoint (its requests/s × sample rate). The rollout test is group-sequential: it looks at 11, 22, ' +
      `45, 90, 180 and 360 minutes after the rollout, the five early looks at α × 0.02 = ${LOOKS[0]?.alpha} each, the last at α × 0.9 ` +
      `= ${ALPHA} (docs/detectors.md), so the alert comes at the first look whose power reaches 90%, never in between. Normal ` +
      'approximation with the 1% minimum effect, one comparison (Benjamini–Hochberg over many endpoints asks more: the simulator ' +
      'table). Detectors run every minute in `ergometer serve`, so add up to a minute.',
    columns: [
      'regression',
      'samples per side (90% at the final look)',
      '1 sampled req/s',
      '10 sampled req/s',
      '100 sampled req/s',
    ],
    rows: timeRows,
    notes: [
      'Example: an endpoint at 1000 req/s sampled at 1% gives 10 sampled req/s: a 2% regression is alerted at the ' +
        `${example ? `${example.minutes < 60 ? `${Math.floor(example.minutes)}-minute` : `${example.minutes / 60}-hour`} look` : 'final look at best'}.`,
      'A +1% regression sits on the default 1% minimum effect: however many samples, only about half of its estimates pass it ' +
        '(lower `minEffectPct` for an endpoint to catch 1% changes).',
    ],
  };
  return {
    title: 'Detection power: rollout comparison vs injected regression',
    description:
      `Share of ${repetitions} simulated rollouts per cell in which the comparison was significant at the rollout test's final ` +
      `look (α × 0.9 = ${ALPHA}: the group-sequential test gives its five interim looks 10% of α) / ` +
      'raised an alert (also ≥ the default 1% threshold). Costs log-normal σ = 0.5; one endpoint, one host class; ' +
      'the column 0% is the false-alarm rate of a single comparison before multiple-testing correction.',
    columns: ['samples per arm', ...effects.map((e) => `${e}%`)],
    rows,
    notes: [
      `Samples per arm for 90% power at +2%: the detector's test needs ${needed.toLocaleString('en-US')}, ` +
        `the oracle (z-test on log-costs with σ known, the most powerful test for this shift) ${oracle.toLocaleString('en-US')}: ` +
        `${((needed / oracle - 1) * 100).toFixed(1)}% more (goal: within 15%). The price of estimating the mean ` +
        'rather than assuming log-normality, which keeps the false-alarm rate at α on every shape (docs/MATH.md §1). ' +
        'The detector reads each side in time blocks too, and uses their variance where they vary more than independent ' +
        'costs allow: on independent costs that kept the power at this sample size at 90.3% against 90.7% without ' +
        '(docs/MATH.md, “Costs correlated in time”).',
    ],
  };
}
