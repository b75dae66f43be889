/**
 * Every bound the collector enforces on what it is sent. The defaults fit the agent's own batches
 * (≤ 1000 samples, a few flags) with room to spare, and stop one client from filling the disk or
 * the memory of the collector. All of them are options of {@link createCollector} and of
 * `ergometer serve`.
 */
export interface IngestLimits {
  /** Request body as sent on the wire (compressed or not), bytes. Default 8 MiB. */
  maxBodyBytes: number;
  /** Body after gunzip, bytes: a small gzip bomb stops here without being inflated further. Default 32 MiB. */
  maxInflatedBytes: number;
  /** `POST /v1/profiles` body (pprof), bytes, before and after gunzip. Default 32 MiB. */
  maxProfileBytes: number;
  /**
   * Request bodies (samples and profiles) read at the same time; one more gets 429. Bounds the
   * memory a crowd of slow or huge uploads can pin: about this × maxInflatedBytes. Default 64.
   */
  maxConcurrentUploads: number;
  /** Samples in one batch. Default 10 000. */
  maxSamplesPerBatch: number;
  /** Rows of `counts` in one batch. Default 10 000. */
  maxCountsPerBatch: number;
  /** Rows of `users` in one batch. Default 1 000. */
  maxUsersPerBatch: number;
  /** Flags on one sample. Default 64. */
  maxFlagsPerSample: number;
  /** JSON nesting (objects and arrays); the wire format needs 4. Default 8. */
  maxJsonDepth: number;
  /** Length of `service`, `commit`, `region`, `hostClass`, `batchId`, flag keys and variants, user: UTF-16 units. Default 128. */
  maxNameLength: number;
  /** Length of `endpoint` and `host`. Default 256. */
  maxEndpointLength: number;
  /** Length of a `users[].sketch` (base64). Default 65 536. */
  maxSketchLength: number;
  /** A `ts` older than this many ms before the receive time is refused. Default 30 days. */
  maxPastMs: number;
  /** A `ts` later than this many ms after the receive time is refused (clock skew). Default 1 hour. */
  maxFutureMs: number;
  /** Largest accepted `cost` (either metric). Default 2^53 − 1. */
  maxCost: number;
  /** Largest accepted `wallMs` and backend time, ms. Default 1e9 (≈ 11.6 days). */
  maxDurationMs: number;
  /** Largest accepted `weight` and `counts[].requests`. Default 1e9. */
  maxWeight: number;
  /** Distinct endpoints kept per service; samples with further endpoints are refused and counted. Default 2000. */
  maxEndpointsPerService: number;
  /** Distinct flag keys kept per service; samples with further keys are refused and counted. Default 500. */
  maxFlagKeysPerService: number;
}

export const DEFAULT_LIMITS: Readonly<IngestLimits> = Object.freeze({
  maxBodyBytes: 8 * 1024 * 1024,
  maxInflatedBytes: 32 * 1024 * 1024,
  maxProfileBytes: 32 * 1024 * 1024,
  maxConcurrentUploads: 64,
  maxSamplesPerBatch: 10_000,
  maxCountsPerBatch: 10_000,
  maxUsersPerBatch: 1_000,
  maxFlagsPerSample: 64,
  maxJsonDepth: 8,
  maxNameLength: 128,
  maxEndpointLength: 256,
  maxSketchLength: 65_536,
  maxPastMs: 30 * 24 * 3600_000,
  maxFutureMs: 3600_000,
  maxCost: Number.MAX_SAFE_INTEGER,
  maxDurationMs: 1e9,
  maxWeight: 1e9,
  maxEndpointsPerService: 2000,
  maxFlagKeysPerService: 500,
});

/** The defaults with `overrides` applied; throws ERGOMETER_BAD_OPTION for a limit that is not a positive number. */
export function resolveLimits(overrides: Partial<IngestLimits> = {}): IngestLimits {
  const limits: IngestLimits = { ...DEFAULT_LIMITS };
  for (const [name, value] of Object.entries(overrides) as Array<[keyof IngestLimits, unknown]>) {
    if (value === undefined) continue;
    if (!(name in DEFAULT_LIMITS)) {
      throw Object.assign(new Error(`unknown ingest limit "${name}"`), { code: 'ERGOMETER_BAD_OPTION' });
    }
    if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) {
      throw Object.assign(new Error(`ingest limit ${name} must be a positive finite number, got ${String(value)}`), {
        code: 'ERGOMETER_BAD_OPTION',
      });
    }
    limits[name] = value;
  }
  return limits;
}
