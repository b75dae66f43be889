import type { Alert } from '../detect/alert';
import type { DetectorConfig } from '../detect/config';
import { runDetectors } from '../detect/run';
import type { Store } from '../store/types';
import { type AlertSink, deliver } from './sinks';
import type { AlertBook } from './state';

export interface DetectorSchedulerOptions {
  store: Store;
  config: DetectorConfig;
  book: AlertBook;
  sinks: AlertSink[];
  /** Time between runs, ms. */
  intervalMs: number;
  log: (message: string) => void;
  now?: () => number;
}

/**
 * Runs the detectors on a schedule inside `ergometer serve`: never two runs at once, never keeping
 * the process alive, every new alert (by stable id) sent once to every sink, a failing run or sink
 * logged and retried at the next tick rather than stopping the server.
 */
export class DetectorScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<Alert[]> | undefined;
  private stopped = false;
  /** Completed runs, for /metrics and tests. */
  runs = 0;
  lastError: Error | undefined;

  constructor(private readonly options: DetectorSchedulerOptions) {}

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      void this.runOnce().finally(() => {
        if (!this.stopped) this.timer = setTimeout(tick, this.options.intervalMs).unref();
      });
    };
    this.timer = setTimeout(tick, Math.min(this.options.intervalMs, 5_000)).unref();
  }

  /** One run now (or the one in progress). Resolves with the alerts that were new. */
  runOnce(): Promise<Alert[]> {
    if (!this.running) {
      this.running = this.run().finally(() => {
        this.running = undefined;
      });
    }
    return this.running;
  }

  private async run(): Promise<Alert[]> {
    const now = (this.options.now ?? Date.now)();
    try {
      const result = await runDetectors(this.options.store, this.options.config, { now });
      const fresh = this.options.book.merge(result.alerts, now);
      if (fresh.length > 0) {
        const failures = await deliver(this.options.sinks, fresh);
        for (const f of failures) this.options.log(`alert sink ${f.sink} failed: ${f.error.message}`);
      }
      this.runs++;
      this.lastError = undefined;
      return fresh;
    } catch (error) {
      this.lastError = error as Error;
      this.options.log(`detector run failed (retrying at the next tick): ${(error as Error).message}`);
      return [];
    }
  }

  /** Stops scheduling and waits for a run in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }
}
