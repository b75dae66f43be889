import path from 'node:path';

/** What the native addon (native/counters.c) exports. */
export interface NativeCounters {
  tryOpen(
    source: NativeSource,
  ): { ok: true; source: NativeSource; rdpmc: boolean } | { ok: false; errno: number; error: string };
  /** Current counter value, or -1 when no counter is open or the read failed. */
  read(): number;
  close(): void;
  rdpmcAvailable(): boolean;
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
