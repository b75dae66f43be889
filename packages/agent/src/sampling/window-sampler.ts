/**
 * Decides which requests are measured.
 *
 * Why windows and not a coin per request: the accounting that charges CPU to a
 * request needs async_hooks `before` callbacks (and, on Node 20, the
 * AsyncLocalStorage init hook), and once enabled they cost every callback of
 * every request, sampled or not. With a coin per request at rate r and C
 * requests in flight, some sampled request is in flight — so the hooks are on —
 * a fraction 1-(1-r)^C of the time: ~47% at r=0.01, C=64. Instead we sample
 * *every* request that starts inside short windows, and keep the hooks off
 * between windows, so they are on for about r of the time plus the tail of the
 * last sampled requests.
 *
 * Unbiasedness: window starts form a Poisson process (exponential gaps), so by
 * PASTA (Poisson Arrivals See Time Averages, Wolff 1982) the probability that a
 * request arriving at any time falls in a window is exactly the fraction of time
 * covered by windows, r, whatever the traffic pattern. Each sample therefore
 * stands for 1/r requests (its `weight`). Samples within one window are
 * correlated in time; detectors treat windows, not requests, as independent
 * where that matters.
 *
 *   time ──►  [win]········gap~Exp········[win]·····gap·····[win]
 *   fraction of time in windows = windowMs / (windowMs + mean gap) = rate
 */
export class WindowSampler {
  private readonly windowMs: number;
  private readonly meanGapMs: number;
  private windowStart: number;
  private windowEnd: number;

  /**
   * @param rate fraction of requests to sample, 0..1 (the highest of the default and per-endpoint rates)
   * @param windowMs length of one window
   * @param now clock in ms (injectable for tests)
   * @param random uniform [0,1) source (injectable for tests)
   */
  constructor(
    readonly rate: number,
    windowMs: number,
    private readonly now: () => number = () => performance.now(),
    private readonly random: () => number = Math.random,
  ) {
    this.windowMs = windowMs;
    this.meanGapMs = rate > 0 ? (windowMs * (1 - rate)) / rate : Number.POSITIVE_INFINITY;
    // Start at a random phase of a stationary process: in a window with
    // probability `rate`, else somewhere in a gap.
    const t = now();
    if (rate > 0 && random() < rate) {
      this.windowStart = t - random() * windowMs;
      this.windowEnd = this.windowStart + windowMs;
    } else {
      // Exponential gaps are memoryless: the remaining gap is Exp(mean gap) too.
      this.windowStart = t + this.gap();
      this.windowEnd = this.windowStart + windowMs;
    }
  }

  /** True when a request starting now is to be measured. O(1), no allocation. */
  shouldSample(): boolean {
    if (this.rate >= 1) return true;
    if (this.rate <= 0) return false;
    const t = this.now();
    if (t < this.windowStart) return false;
    if (t < this.windowEnd) return true;
    // Past the window: draw the next ones until one ends after now. Usually
    // one iteration; more only after a long idle period.
    while (this.windowEnd <= t) {
      this.windowStart = this.windowEnd + this.gap();
      this.windowEnd = this.windowStart + this.windowMs;
    }
    return t >= this.windowStart;
  }

  private gap(): number {
    if (!Number.isFinite(this.meanGapMs)) return Number.POSITIVE_INFINITY;
    return -Math.log(1 - this.random()) * this.meanGapMs;
  }
}
