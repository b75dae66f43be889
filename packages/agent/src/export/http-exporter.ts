import http from 'node:http';
import https from 'node:https';
import { setImmediate as setImmediatePromise } from 'node:timers/promises';
import zlib from 'node:zlib';
import { outsideRequests } from '../context/request-context';
import { channels, publish } from '../diagnostics';
import { ErgometerError } from '../errors';
import { AGENT_VERSION } from '../version';
import { ColumnEncoder } from './columns';
import type { Exporter, ProfileUpload, WireBatch, WireSample } from './wire';

/**
 * Marks the agent's own HTTP traffic. It is set on the exporter's `http.Agent` (so it is visible on
 * `request.agent` already in `http.client.request.start`, which Node publishes inside the ClientRequest
 * constructor) and on each ClientRequest. Backend timing must skip requests for which
 * {@link isExporterRequest} is true. `Symbol.for`, so that two copies of the package agree.
 */
export const kExporterRequest: unique symbol = Symbol.for('ergometer.exporter-request') as never;

/** Whether `request` (a node:http ClientRequest) is one the agent's exporter made. */
export function isExporterRequest(request: unknown): boolean {
  if (typeof request !== 'object' || request === null) return false;
  const marked = request as { [kExporterRequest]?: unknown; agent?: { [kExporterRequest]?: unknown } | null };
  return marked[kExporterRequest] === true || marked.agent?.[kExporterRequest] === true;
}

/** How a batch is retried. The fault-injection tests shrink these to compress a 10-minute outage. */
export interface RetryPolicy {
  /** Backoff ceiling of the first retry, ms; it doubles each attempt. */
  initialDelayMs: number;
  /** Largest backoff ceiling, ms. The wait is uniform in [0, ceiling] ("full jitter"). */
  maxDelayMs: number;
  /** Longest `Retry-After` obeyed, ms: a bogus header must not park the exporter for a day. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = {
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  maxRetryAfterMs: 5 * 60_000,
};

export interface HttpExporterOptions {
  token?: string | undefined;
  /** Longest one POST may take, from the request to the last byte of the answer, ms. */
  requestTimeoutMs: number;
  retry?: Partial<RetryPolicy>;
  /** Uniform [0, 1): the jitter. Tests pass a seeded one. */
  random?: () => number;
}

/**
 * Samples serialized per turn of the event loop. At ~10 µs per sample (measured on a 2-vCPU VM) a slice
 * holds the loop for ~1 ms; a whole 512 KiB batch in one JSON.stringify held it for ~20 ms.
 */
const SAMPLES_PER_SLICE = 128;

/** Wire format versions the exporter can write: v1 (SPEC §4) and v2, v1 with columnar samples (columns.ts). */
export type WireVersion = 1 | 2;

/**
 * The batch as gzipped JSON, without stalling the event loop: serialized a slice at a time with a turn of
 * the loop between slices (v1: 128 samples; v2: 128 samples into the columns, then one column), and
 * compressed by a gzip stream, whose work runs on the libuv threadpool (bench/src/exporter.ts compares
 * this with gzipSync and with one JSON.stringify). The JSON is the same as JSON.stringify of the batch
 * in that version, key order included.
 */
export async function serializeAndCompress(batch: WireBatch, version: WireVersion = 2): Promise<Buffer> {
  const gzipStream = zlib.createGzip();
  const compressed: Buffer[] = [];
  gzipStream.on('data', (chunk: Buffer) => compressed.push(chunk));
  const finished = new Promise<void>((resolve, reject) => {
    gzipStream.once('end', resolve);
    gzipStream.once('error', reject);
  });
  const { samples, counts, users, ...header } = batch;
  if (version === 1) {
    // `{"v":1,...,"agent":{...}` + `,"samples":[` … `],"counts":…,"users":…}`
    gzipStream.write(`${JSON.stringify(header).slice(0, -1)},"samples":[`);
    for (let from = 0; from < samples.length; from += SAMPLES_PER_SLICE) {
      if (from > 0) await setImmediatePromise();
      const slice = samples.slice(from, from + SAMPLES_PER_SLICE);
      gzipStream.write(`${from > 0 ? ',' : ''}${JSON.stringify(slice).slice(1, -1)}`);
    }
    gzipStream.write(']');
  } else {
    // `{"v":2,...,"agent":{...}` + `,"samples":{"endpoints":[…],…}` + `,"counts":…,"users":…}`
    gzipStream.write(`${JSON.stringify({ ...header, v: 2 }).slice(0, -1)},"samples":`);
    const encoder = new ColumnEncoder();
    for (let from = 0; from < samples.length; from += SAMPLES_PER_SLICE) {
      if (from > 0) await setImmediatePromise();
      const to = Math.min(samples.length, from + SAMPLES_PER_SLICE);
      for (let i = from; i < to; i++) encoder.add(samples[i] as WireSample);
    }
    let first = true;
    for (const [name, column] of Object.entries(encoder.result())) {
      if (samples.length > SAMPLES_PER_SLICE) await setImmediatePromise();
      gzipStream.write(`${first ? '{' : ','}${JSON.stringify(name)}:${JSON.stringify(column)}`);
      first = false;
    }
    gzipStream.write('}');
  }
  gzipStream.end(`,"counts":${JSON.stringify(counts)},"users":${JSON.stringify(users)}}`);
  await finished;
  return Buffer.concat(compressed);
}

/** Whether a collector's 400 answer says it does not speak the batch's wire format version. */
function isUnsupportedVersion(outcome: Outcome): boolean {
  if (outcome.kind !== 'rejected' || outcome.status !== 400) return false;
  try {
    return (JSON.parse(outcome.body) as { error?: { code?: unknown } }).error?.code === 'ERGOMETER_UNSUPPORTED_VERSION';
  } catch {
    return false;
  }
}

/** Bytes of an answer the exporter reads; the rest is discarded (only check-ins and refusals are read). */
const MAX_ANSWER_BYTES = 64 * 1024;

/** Longest one check-in (POST /v1/profiling) may take, ms, below `requestTimeoutMs`. */
const CHECK_IN_TIMEOUT_MS = 2000;

type Outcome =
  | { kind: 'delivered'; status: number; body: string }
  | { kind: 'retry'; status?: number; retryAfterMs?: number; error?: unknown }
  | { kind: 'rejected'; status: number; body: string };

/**
 * The `http:`/`https:` collector: POSTs each batch to `${collector}/v1/samples` as gzipped JSON with a
 * bearer token, over one keep-alive connection. A batch that fails for a reason that may pass (network
 * error, timeout, 408, 429, 5xx, an answer cut short) is retried with exponential backoff and full jitter,
 * honouring `Retry-After`, always with the same body and so the same `batchId`, which the collector stores
 * once. Other 4xx answers reject the batch for good. Retries go on until the batch is delivered or the
 * caller's signal aborts (the batcher's flush deadline); meanwhile the batcher keeps newer samples within
 * its byte bound. Serialization is sliced and compression runs on the libuv threadpool, so a large batch
 * never stalls the event loop; sockets and timers never keep the process alive.
 */
export class HttpExporter implements Exporter {
  readonly url: URL;
  /** `${collector}/v1/profiles`, without its query. */
  readonly profilesUrl: URL;
  private readonly transport: typeof http | typeof https;
  private readonly agent: http.Agent;
  private readonly retry: RetryPolicy;
  private readonly random: () => number;
  private readonly headers: Record<string, string>;
  private readonly profileHeaders: Record<string, string>;
  private readonly checkInHeaders: Record<string, string>;
  /** `${collector}/v1/profiling`. */
  readonly profilingUrl: URL;
  private warnedRejection = false;
  private wireVersion: WireVersion = 2;

  constructor(
    collector: string,
    private readonly options: HttpExporterOptions,
  ) {
    const base = new URL(collector);
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new ErgometerError(
        'ERGOMETER_UNSUPPORTED_COLLECTOR',
        `ergometer: collector "${collector}" is not an http: or https: URL`,
      );
    }
    this.url = new URL(`${base.pathname.replace(/\/+$/, '')}/v1/samples`, base);
    this.profilesUrl = new URL(`${base.pathname.replace(/\/+$/, '')}/v1/profiles`, base);
    this.profilingUrl = new URL(`${base.pathname.replace(/\/+$/, '')}/v1/profiling`, base);
    this.transport = base.protocol === 'https:' ? https : http;
    this.agent = new this.transport.Agent({ keepAlive: true, maxSockets: 2, maxFreeSockets: 1 });
    (this.agent as unknown as Record<symbol, unknown>)[kExporterRequest] = true;
    this.retry = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.random = options.random ?? Math.random;
    this.headers = {
      'content-type': 'application/json',
      'content-encoding': 'gzip',
      'user-agent': `ergometer-agent/${AGENT_VERSION} node/${process.version}`,
    };
    if (options.token !== undefined) this.headers.authorization = `Bearer ${options.token}`;
    // The pprof is gzipped as a file (`.pb.gz`), not as a transfer encoding: the collector stores it as is.
    const { 'content-type': _json, 'content-encoding': _gzip, ...common } = this.headers;
    this.profileHeaders = { ...common, 'content-type': 'application/octet-stream' };
    this.checkInHeaders = { ...common, 'content-type': 'application/json' };
  }

  send(batch: WireBatch, signal?: AbortSignal): Promise<void> {
    // Outside any sampled request: this is nobody's CPU and nobody's backend time.
    return outsideRequests(async () => {
      const version = this.wireVersion;
      const body = await serializeAndCompress(batch, version);
      // A collector older than wire format 2 refuses it with ERGOMETER_UNSUPPORTED_VERSION: the same batch
      // (same batchId) goes again as v1, and so does every later one.
      const fallback =
        version === 2
          ? () => {
              this.useWireV1();
              return serializeAndCompress(batch, 1);
            }
          : undefined;
      await this.deliver(
        this.url,
        body,
        this.headers,
        { id: batch.batchId, what: `batch ${batch.batchId}`, lost: `its ${batch.samples.length} samples are dropped` },
        signal,
        fallback,
      );
    });
  }

  /** The wire format version batches are written in: 2 until a collector refuses it. */
  get wireFormat(): WireVersion {
    return this.wireVersion;
  }

  private useWireV1(): void {
    if (this.wireVersion === 1) return;
    this.wireVersion = 1;
    process.emitWarning(
      `the collector at ${this.url.origin} does not speak wire format 2: batches go as wire format 1, ` +
        "larger and dearer for the collector to parse. Upgrade the collector to the agent's version.",
      { code: 'ERGOMETER_WIRE_FORMAT_1' },
    );
  }

  /**
   * POSTs one profile to `${collector}/v1/profiles?service=…&commit=…&host=…&metric=…&from=…&to=…`
   * (PROFILE-CONTRACT.md), with the same token, retries and deadline as batches. The body is already
   * gzipped pprof, sent as `application/octet-stream` (the collector checks the gzip magic).
   */
  sendProfile(profile: ProfileUpload, signal?: AbortSignal): Promise<void> {
    const url = new URL(this.profilesUrl);
    url.search = new URLSearchParams({
      service: profile.service,
      commit: profile.commit,
      host: profile.host,
      metric: profile.metric,
      from: String(profile.from),
      to: String(profile.to),
    }).toString();
    const id = `profile ${profile.from}-${profile.to}`;
    return outsideRequests(() =>
      this.deliver(url, profile.pprof, this.profileHeaders, { id, what: id, lost: 'it is dropped' }, signal),
    );
  }

  /**
   * One `POST ${collector}/v1/profiling` (profile/coordination.ts): JSON in, `{"profile": boolean}` out.
   * Not retried here: the caller decides what a failure means. Never rejects.
   */
  checkIn(body: object): Promise<CheckInOutcome> {
    return outsideRequests(async (): Promise<CheckInOutcome> => {
      // A short deadline: the process waits on this answer to know whether it profiles.
      const timeoutMs = Math.min(this.options.requestTimeoutMs, CHECK_IN_TIMEOUT_MS);
      const payload = Buffer.from(JSON.stringify(body));
      const outcome = await this.post(this.profilingUrl, payload, this.checkInHeaders, undefined, timeoutMs);
      if (outcome.kind === 'delivered') {
        try {
          const answer = JSON.parse(outcome.body) as { profile?: unknown };
          if (typeof answer.profile === 'boolean') return { kind: 'answer', profile: answer.profile };
        } catch {
          // Not JSON: reported below like any answer without a decision.
        }
        return { kind: 'refused', status: outcome.status, body: outcome.body };
      }
      if (outcome.kind === 'rejected') return { kind: 'refused', status: outcome.status, body: outcome.body };
      return { kind: 'unreachable', reason: describeRetry(outcome) };
    });
  }

  /**
   * Sends `body` until it is delivered, refused for good, or `signal` aborts; `olderFormat`, if given,
   * is the body in an older wire format, sent (once) instead when the collector says it does not speak
   * this one.
   */
  private async deliver(
    url: URL,
    body: Buffer,
    headers: Record<string, string>,
    item: { id: string; what: string; lost: string },
    signal: AbortSignal | undefined,
    olderFormat?: () => Promise<Buffer>,
  ): Promise<void> {
    let fallback = olderFormat;
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw aborted(signal, item.what, attempt);
      const outcome = await this.post(url, body, headers, signal);
      if (outcome.kind === 'delivered') return;
      if (fallback !== undefined && isUnsupportedVersion(outcome)) {
        body = await fallback();
        fallback = undefined;
        continue;
      }
      if (outcome.kind === 'rejected') {
        const error = new ErgometerError(
          'ERGOMETER_COLLECTOR_REJECTED',
          `ergometer: the collector at ${url.origin} refused ${item.what} with HTTP ${outcome.status}` +
            `${outcome.body === '' ? '' : ` (${outcome.body.slice(0, 200)})`}; ${item.lost}. ` +
            (outcome.status === 401 || outcome.status === 403
              ? 'Check the ingest token (ERGOMETER_TOKEN).'
              : 'Check the collector URL and the agent and server versions.'),
        );
        if (!this.warnedRejection && (outcome.status === 401 || outcome.status === 403)) {
          // A wrong token loses every batch: say so once where an operator looks.
          this.warnedRejection = true;
          process.emitWarning(error.message, { code: error.code });
        }
        throw error;
      }
      const ceilingMs = Math.min(this.retry.maxDelayMs, this.retry.initialDelayMs * 2 ** Math.min(attempt, 30));
      let delayMs = this.random() * ceilingMs;
      if (outcome.retryAfterMs !== undefined) {
        delayMs = Math.max(delayMs, Math.min(outcome.retryAfterMs, this.retry.maxRetryAfterMs));
      }
      publish(channels.batchRetry, {
        batchId: item.id,
        attempt: attempt + 1,
        status: outcome.status,
        error: outcome.error,
        delayMs,
      });
      await sleep(delayMs, signal);
    }
  }

  /** One POST. Never rejects: every failure becomes an outcome. */
  private post(
    url: URL,
    body: Buffer,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
    timeoutMs: number = this.options.requestTimeoutMs,
  ): Promise<Outcome> {
    return new Promise<Outcome>((resolve) => {
      let settled = false;
      const settle = (outcome: Outcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timeout);
        signal?.removeEventListener('abort', onAbort);
        resolve(outcome);
      };
      const request = this.transport.request(url, {
        method: 'POST',
        agent: this.agent,
        headers: { ...headers, 'content-length': String(body.length) },
      });
      (request as unknown as Record<symbol, unknown>)[kExporterRequest] = true;
      // One deadline for the whole exchange: a collector that accepts the connection and then trickles
      // (or says nothing) must not hold the socket and the batch for longer than this.
      const timeout = setTimeout(() => {
        request.destroy(new Error(`no complete answer within ${timeoutMs} ms`));
      }, timeoutMs);
      timeout.unref();
      const onAbort = () => request.destroy(new Error('flush deadline'));
      signal?.addEventListener('abort', onAbort, { once: true });
      request.on('socket', (socket) => socket.unref());
      request.on('error', (error) => settle({ kind: 'retry', error }));
      request.on('response', (response) => {
        const status = response.statusCode ?? 0;
        const chunks: Buffer[] = [];
        let length = 0;
        response.on('data', (chunk: Buffer) => {
          if (length < MAX_ANSWER_BYTES) chunks.push(chunk);
          length += chunk.length;
        });
        response.on('error', (error) => settle({ kind: 'retry', status, error }));
        // 'aborted'/'close' before 'end': the answer was cut short; whether the batch was stored is
        // unknown, and retrying with the same batchId is safe either way.
        response.on('close', () => {
          if (!response.complete) settle({ kind: 'retry', status, error: new Error('answer cut short') });
        });
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8').slice(0, 1000);
          if (status >= 200 && status < 300) return settle({ kind: 'delivered', status, body: text });
          if (status === 408 || status === 429 || status >= 500) {
            const retryAfterMs = parseRetryAfter(response.headers['retry-after']);
            return settle(
              retryAfterMs === undefined ? { kind: 'retry', status } : { kind: 'retry', status, retryAfterMs },
            );
          }
          settle({ kind: 'rejected', status, body: text });
        });
      });
      if (signal?.aborted) onAbort();
      request.end(body);
    });
  }

  close(): Promise<void> {
    this.agent.destroy();
    return Promise.resolve();
  }
}

/** What became of one check-in: the collector's decision, a refusal (an older collector: 404), or no answer. */
export type CheckInOutcome =
  | { kind: 'answer'; profile: boolean }
  | { kind: 'refused'; status: number; body: string }
  | { kind: 'unreachable'; reason: string };

function describeRetry(outcome: Extract<Outcome, { kind: 'retry' }>): string {
  if (outcome.status !== undefined) return `HTTP ${outcome.status}`;
  return outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
}

/** `Retry-After` as ms from now: delay-seconds or an HTTP-date (RFC 9110 §10.2.3); undefined if neither. */
export function parseRetryAfter(value: string | undefined, nowMs: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP-date names its day and month ("Fri, 27 Nov 2026 03:00:30 GMT"); Date.parse alone takes "-5".
  if (!/[A-Za-z]{3}/.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}

function aborted(signal: AbortSignal, what: string, attempts: number): ErgometerError {
  return new ErgometerError(
    'ERGOMETER_EXPORT_ABORTED',
    `ergometer: ${what} given up after ${attempts} attempt(s): ` +
      'the flush deadline passed before the collector took it.',
    { cause: signal.reason },
  );
}

/** Waits `ms` without keeping the process alive; resolves early (the caller then sees the abort) on abort. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    timer.unref();
    signal?.addEventListener('abort', done, { once: true });
  });
}
