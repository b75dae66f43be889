/**
 * Wire format v1 (SPEC §4): a batch as the agent holds it, one object per sample. The `file:` exporter
 * writes it as it is; the HTTP exporter sends it as wire format 2, the samples as columns (columns.ts,
 * docs/wire-format.md). The server validates both (packages/ergometer/src/ingest/validate.ts); keep them in step.
 */
export interface WireSample {
  /** Request start, ms since the epoch. */
  ts: number;
  /** `METHOD route-template`. */
  endpoint: string;
  status: number;
  /** CPU cost charged to this request only, in the batch's `metric` units. */
  cost: number;
  wallMs: number;
  backend?: { db: number; cache: number; http: number };
  flags?: Record<string, string>;
  user?: string;
  /** How many requests this sample stands for (1 / sample rate). */
  weight: number;
  /** Present and true when the client went away before the response finished. */
  aborted?: boolean;
  /** Flags evaluated beyond the cap of 64 per request, not in `flags`; an extension of v1. */
  flagsDropped?: number;
}

export interface WireCount {
  minute: number;
  endpoint: string;
  requests: number;
}

export interface WireUsers {
  minute: number;
  /** Distinct-user sketch of this minute (users-sketch.ts): merge sketches of one minute, then estimate. */
  sketch: string;
}

export interface WireBatch {
  v: 1;
  batchId: string;
  service: string;
  host: string;
  region: string;
  commit: string;
  /**
   * CPU model and count of the host, e.g. `Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz x2`; an extension of
   * v1. Instruction counts and CPU time differ between CPU models: the server compares costs only within one.
   */
  hostClass: string;
  metric: 'instructions' | 'cpu_ns';
  agent: {
    version: string;
    runtime: string;
    /** Which counter produced `cost` (e.g. `task-clock`); an extension of v1. */
    counter: string;
    /** Samples this process threw away since the previous batch (queue full, failed writes). */
    dropped: number;
  };
  samples: WireSample[];
  counts: WireCount[];
  users: WireUsers[];
}

/** One profile for `POST /v1/profiles` (PROFILE-CONTRACT.md): gzipped pprof and what it covers. */
export interface ProfileUpload {
  service: string;
  commit: string;
  host: string;
  /** Unit of the cost column; the agent's profiler always measures `cpu_ns`. */
  metric: 'instructions' | 'cpu_ns';
  /** The window the profile covers, ms since the epoch. */
  from: number;
  to: number;
  /** The pprof `Profile` protobuf, gzip-compressed. */
  pprof: Buffer;
}

/**
 * Sends one batch somewhere. Rejects when the batch could not be delivered. `signal`, when aborted,
 * asks the exporter to give up (retries included) and reject soon.
 */
export interface Exporter {
  send(batch: WireBatch, signal?: AbortSignal): Promise<void>;
  /** Sends one profile; rejects when it could not be delivered. `signal` as for {@link send}. */
  sendProfile(profile: ProfileUpload, signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}
