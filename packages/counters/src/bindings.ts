import path from 'node:path';

/** What the native addon (native/counters.c) exports. */
export interface NativeCounters {
  /** Opens a new counter for the calling thread; each has its own fd and never disturbs another. */
  tryOpen(source: NativeSource): NativeOpened | { ok: false; errno: number; error: string };
}

/** A counter the addon opened: `read` and `close` are bound to it. */
export interface NativeOpened {
  ok: true;
  source: NativeSource;
  rdpmc: boolean;
  /** Current counter value, or -1 after close or when the read failed. */
  read(): number;
  /** Releases the fd now (else when read and close are garbage collected). Idempotent. */
  close(): void;
}

export type NativeSource = 'instructions' | 'task-clock' | 'thread-cputime';

/**
 * Loads the addon built by node-gyp at install. Never throws: a missing or
 * broken build yields the load error instead, and the caller degrades to the
 * JavaScript fallback.
 */
export function loadNativeCounters(): { native: NativeCounters } | { native: null; loadError: Error } {
  const file = path.join(__dirname, '..', '..', 'build', 'Release', 'ergometer_counters.node');
  try {
    return { native: require(file) as NativeCounters };
  } catch (error) {
    return { native: null, loadError: error instanceof Error ? error : new Error(String(error)) };
  }
}
