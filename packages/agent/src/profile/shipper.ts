import { channels, publish } from '../diagnostics';
import type { Exporter, ProfileUpload } from '../export/wire';

/**
 * Hands profiles to the exporter one at a time. Memory is bounded: at most `maxQueued` profiles wait
 * while one is on its way (retries included); when full, the oldest waiting one is dropped and counted
 * on `ergometer:agent:profile-dropped`.
 */
export class ProfileShipper {
  private readonly queue: ProfileUpload[] = [];
  private sending: Promise<void> | undefined;
  private readonly abort = new AbortController();

  constructor(
    private readonly exporter: Exporter,
    private readonly maxQueued = 2,
  ) {}

  /** Whether a profile waits or is on its way. */
  get pending(): boolean {
    return this.sending !== undefined || this.queue.length > 0;
  }

  add(profile: ProfileUpload): void {
    if (this.abort.signal.aborted) {
      dropped(profile, 'shut down');
      return;
    }
    while (this.queue.length >= this.maxQueued) dropped(this.queue.shift()!, 'queue full');
    this.queue.push(profile);
    this.sending ??= this.pump().finally(() => {
      this.sending = undefined;
    });
  }

  /** Waits for every profile to be sent, giving up after `timeoutMs`: what is left is dropped. Never rejects. */
  async flushWithin(timeoutMs: number): Promise<void> {
    if (this.sending !== undefined) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      });
      await Promise.race([this.sending, deadline]);
      clearTimeout(timer);
    }
    this.abort.abort(new Error('flush deadline'));
    for (const profile of this.queue.splice(0)) dropped(profile, 'flush deadline');
    await this.sending;
  }

  private async pump(): Promise<void> {
    for (let profile = this.queue.shift(); profile !== undefined; profile = this.queue.shift()) {
      try {
        await this.exporter.sendProfile(profile, this.abort.signal);
        publish(channels.profileSent, {
          from: profile.from,
          to: profile.to,
          bytes: profile.pprof.length,
        });
      } catch (error) {
        dropped(profile, 'export failed', error);
      }
    }
  }
}

function dropped(profile: ProfileUpload, reason: string, error?: unknown): void {
  publish(channels.profileDropped, { from: profile.from, to: profile.to, reason, error });
}
