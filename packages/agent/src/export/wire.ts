/**
 * Wire format v1 (SPEC §4): what the agent sends, one batch at a time.
 * The server validates the same shape; keep the two in step.
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
}

export interface WireCount {
  minute: number;
  endpoint: string;
  requests: number;
}

export interface WireUsers {
  minute: number;
  sketch: string;
}

export interface WireBatch {
  v: 1;
  batchId: string;
  service: string;
  host: string;
  region: string;
  commit: string;
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

/** Sends one batch somewhere. Rejects when the batch could not be delivered. */
export interface Exporter {
  send(batch: WireBatch): Promise<void>;
  close(): Promise<void>;
}
