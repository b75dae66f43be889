import { createHmac } from 'node:crypto';
import { addUserHash, createUsersSketch, encodeUsersSketch, type UsersSketch } from '../export/users-sketch';
import type { WireCount, WireUsers } from '../export/wire';

const MINUTE_MS = 60_000;
/**
 * Minutes of totals kept while no batch takes them (a collector outage holds the flush loop on one
 * batch). Beyond it the oldest minute goes: each costs a 4 KiB sketch plus one number per endpoint.
 */
const MAX_PENDING_MINUTES = 30;
/**
 * Raw user ids remembered within the current minute, so that a user's second request costs a Map lookup
 * instead of an HMAC and a sketch update. Past this many distinct users the cache starts over (correct,
 * only slower: adding a user to the sketch twice changes nothing).
 */
const MAX_CACHED_USERS = 20_000;

/**
 * Per-minute totals over every request, sampled or not: request counts per endpoint (wire `counts`) and
 * distinct users (wire `users`). Counting is a Map increment; users cost an HMAC-SHA256 the first time a
 * user is seen in a minute. A batch takes everything pending with {@link drain}: the server adds counts
 * and merges sketches of one minute however many batches they come in.
 */
export class RequestTotals {
  private counts = new Map<number, Map<string, number>>();
  private sketches = new Map<number, UsersSketch>();
  private userHashes = new Map<string, string>();
  private userHashesMinute = 0;
  private readonly userHashKey: Buffer | undefined;

  /**
   * @param userHashKey HMAC key for user ids; undefined when no `userId` extractor is configured.
   * @param onPending called when totals become pending after a drain: the batcher arms its timer.
   */
  constructor(
    userHashKey: string | Buffer | undefined,
    private readonly onPending: () => void,
  ) {
    this.userHashKey = userHashKey === undefined ? undefined : Buffer.from(userHashKey);
  }

  /** Whether user ids are hashed and counted (a `userId` extractor is configured). */
  get countsUsers(): boolean {
    return this.userHashKey !== undefined;
  }

  /** Counts one request of `endpoint` that ended at `nowMs`. */
  countRequest(endpoint: string, nowMs: number): void {
    const minute = nowMs - (nowMs % MINUTE_MS);
    let perEndpoint = this.counts.get(minute);
    if (perEndpoint === undefined) {
      if (this.counts.size === 0 && this.sketches.size === 0) this.onPending();
      perEndpoint = new Map();
      this.counts.set(minute, perEndpoint);
      this.trim(this.counts);
    }
    perEndpoint.set(endpoint, (perEndpoint.get(endpoint) ?? 0) + 1);
  }

  /**
   * Adds user `userId` to the minute's distinct users and returns its opaque hash for `sample.user`
   * (base64url of the first 128 bits of HMAC-SHA256(key, id)). Undefined when users are not counted.
   */
  countUser(userId: string, nowMs: number): string | undefined {
    if (this.userHashKey === undefined) return undefined;
    const minute = nowMs - (nowMs % MINUTE_MS);
    if (minute !== this.userHashesMinute || this.userHashes.size >= MAX_CACHED_USERS) {
      this.userHashes.clear();
      this.userHashesMinute = minute;
    }
    const cached = this.userHashes.get(userId);
    if (cached !== undefined && this.sketches.has(minute)) return cached;
    const digest = createHmac('sha256', this.userHashKey).update(userId).digest();
    let sketch = this.sketches.get(minute);
    if (sketch === undefined) {
      if (this.counts.size === 0 && this.sketches.size === 0) this.onPending();
      sketch = createUsersSketch();
      this.sketches.set(minute, sketch);
      this.trim(this.sketches);
    }
    // Bytes 16..23 feed the sketch, bytes 0..15 are the sample's user: independent halves of one digest.
    addUserHash(sketch, digest.subarray(16, 24));
    const hash = digest.subarray(0, 16).toString('base64url');
    this.userHashes.set(userId, hash);
    return hash;
  }

  /** Whether anything waits to be sent. */
  get pending(): boolean {
    return this.counts.size > 0 || this.sketches.size > 0;
  }

  /** Everything counted since the last drain, in wire form; starts over. */
  drain(): { counts: WireCount[]; users: WireUsers[] } {
    const counts: WireCount[] = [];
    for (const [minute, perEndpoint] of this.counts) {
      for (const [endpoint, requests] of perEndpoint) counts.push({ minute, endpoint, requests });
    }
    const users: WireUsers[] = [];
    for (const [minute, sketch] of this.sketches) users.push({ minute, sketch: encodeUsersSketch(sketch) });
    this.counts = new Map();
    this.sketches = new Map();
    return { counts, users };
  }

  private trim(byMinute: Map<number, unknown>): void {
    // Maps iterate in insertion order, and minutes are inserted in time order (clock steps aside).
    while (byMinute.size > MAX_PENDING_MINUTES) byMinute.delete(byMinute.keys().next().value as number);
  }
}

/**
 * The HMAC key for user ids: `userHashKey` when given, else one derived from the service name. A derived
 * key is the same on every process of the service (so sketches merge) but is no secret: anyone who knows
 * the service name can hash a guessed id and compare, so the hashes are then only pseudonymous.
 */
export function userHashKeyFor(service: string, userHashKey: string | undefined): string {
  return userHashKey ?? `ergometer-user-hash:v1:${service}`;
}
