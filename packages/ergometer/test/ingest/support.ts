/** Helpers shared by the ingest and server tests: valid wire batches, built and randomised. */
import { randomUUID } from 'node:crypto';

export interface WireSampleInput {
  ts: number;
  endpoint: string;
  status: number;
  cost: number;
  wallMs: number;
  backend?: { db: number; cache: number; http: number };
  flags?: Record<string, string>;
  user?: string;
  weight?: number;
  aborted?: boolean;
}

/** A valid wire-format v1 batch of `n` samples at `now`, shaped like the agent's. */
export function wireBatch(
  n: number,
  options: {
    service?: string;
    now?: number;
    batchId?: string;
    endpoints?: string[];
    flags?: Record<string, string>;
  } = {},
): Record<string, unknown> & { batchId: string; samples: WireSampleInput[] } {
  const now = options.now ?? Date.now();
  const endpoints = options.endpoints ?? ['GET /feed/:id', 'POST /login'];
  const samples: WireSampleInput[] = [];
  for (let i = 0; i < n; i++) {
    samples.push({
      ts: now - 1000 + i,
      endpoint: endpoints[i % endpoints.length] as string,
      status: 200,
      cost: 1000 + i * 17,
      wallMs: 1.5 + i,
      backend: { db: 0.5, cache: 0.1, http: 0 },
      flags: options.flags ?? { new_ranker: i % 2 === 0 ? 'on' : 'off' },
      user: 'u1',
      weight: 100,
    });
  }
  return {
    v: 1,
    batchId: options.batchId ?? randomUUID(),
    service: options.service ?? 'api',
    host: 'web-7',
    region: 'eu-1',
    commit: 'abc123',
    metric: 'instructions',
    hostClass: 'x86-test',
    agent: { version: '0.1.0', runtime: 'node v20', counter: 'instructions', dropped: 0 },
    samples,
    counts: [{ minute: now - (now % 60_000), endpoint: endpoints[0] as string, requests: n * 100 }],
    users: [],
  };
}
