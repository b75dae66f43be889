/**
 * The collector's HTTP server on plain `node:http`: ingest routes (ingest token), the read API
 * (read token), `/health` and `/metrics` (no token). See SPEC §3, §4, §6 and docs/operations.md.
 *
 * A `POST /v1/samples` goes: token → body (size-bounded, gunzip-bounded) → depth scan → JSON.parse
 * → validation → cardinality guard → write queue (group commit) → `200 {"accepted": n}` once the
 * store has made it durable. Any refusal before the queue stores nothing.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DashboardAssets } from '../dashboard/assets';
import { badRequest, ErgometerError } from '../errors';
import { CardinalityGuard } from '../ingest/cardinality';
import { type IngestLimits, resolveLimits } from '../ingest/limits';
import { parseJsonBody, validateBatch, validateCheckIn, validateDeploy } from '../ingest/validate';
import { decodeProfile, summarizeProfile } from '../profile/decode';
import type { Store } from '../store/types';
import { VERSION } from '../version';
import { TokenSet } from './auth';
import { readBody } from './body';
import { CollectorMetrics, type RejectReason } from './metrics';
import { DEFAULT_PROFILING_POLICY, ProfilingCoordinator, type ProfilingPolicy } from './profiling-coordinator';
import { QueryParams } from './query';
import { answerRead, type ReadContext } from './read-api';
import { DEFAULT_QUEUE_OPTIONS, WriteQueue, type WriteQueueOptions } from './write-queue';

export interface CollectorOptions {
  store: Store;
  /** Tokens accepted on `POST /v1/*`. At least one. */
  ingestTokens: readonly string[];
  /** Tokens accepted on `GET /v1/*`. At least one. */
  readTokens: readonly string[];
  /** Overrides of {@link DEFAULT_LIMITS}. */
  limits?: Partial<IngestLimits>;
  /** Overrides of the write queue's bounds ({@link DEFAULT_QUEUE_OPTIONS}). */
  queue?: Partial<WriteQueueOptions>;
  /** Where operational messages go (never tokens or bodies). Default: stderr. */
  log?: (message: string) => void;
  /** Clock, ms since the epoch. Default Date.now. */
  now?: () => number;
  /** The detectors' alerts, for GET /v1/alerts (without it that route answers 501). */
  read?: ReadContext;
  /** Directory of the built dashboard (index.html, app.js, app.css). Default: dist/dashboard of this package. */
  dashboardDir?: string;
  /** Which processes profile, per service × commit (`POST /v1/profiling`). Default DEFAULT_PROFILING_POLICY. */
  profiling?: Partial<ProfilingPolicy>;
}

export interface Collector {
  readonly server: Server;
  readonly metrics: CollectorMetrics;
  /** Decides which processes profile (`POST /v1/profiling`). */
  readonly profiling: ProfilingCoordinator;
  /** Starts listening; resolves with the bound address (port 0 picks a free port). */
  listen(port: number, host: string): Promise<AddressInfo>;
  /**
   * Graceful stop: refuse new requests, let in-flight ones finish, write everything queued.
   * Does not close the store (its owner does, after this resolves).
   */
  close(): Promise<void>;
}

const REJECT_REASON: Record<string, RejectReason> = {
  ERGOMETER_BAD_BATCH: 'bad_batch',
  ERGOMETER_BAD_BODY: 'bad_batch',
  ERGOMETER_UNSUPPORTED_VERSION: 'unsupported_version',
  ERGOMETER_TOO_LARGE: 'too_large',
  ERGOMETER_UNSUPPORTED_ENCODING: 'unsupported_encoding',
  ERGOMETER_UNAUTHORIZED: 'unauthorized',
  ERGOMETER_QUEUE_FULL: 'queue_full',
  ERGOMETER_BUSY: 'busy',
  ERGOMETER_STORE_UNAVAILABLE: 'store_error',
  ERGOMETER_SHUTTING_DOWN: 'shutting_down',
};

const JSON_TYPE = 'application/json; charset=utf-8';

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  const body = JSON.stringify(value);
  // nosniff: names from the network are in these bodies; a browser must never read them as HTML.
  res.writeHead(status, {
    'content-type': JSON_TYPE,
    'content-length': Buffer.byteLength(body),
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(body);
}

function sendError(res: ServerResponse, error: ErgometerError): void {
  // A refused upload may still be arriving: node:http discards the rest of the body once the
  // answer is sent (and requestTimeout bounds a client that never stops), so the connection can
  // be reused and the client reads the answer instead of a reset.
  sendJson(res, error.status, { error: { code: error.code, message: error.message } }, { ...error.headers });
}

function unauthorized(kind: 'ingest' | 'read'): ErgometerError {
  return new ErgometerError(
    'ERGOMETER_UNAUTHORIZED',
    401,
    `missing or wrong token: send "Authorization: Bearer <${kind} token>" (see ergometer serve's token file or ERGOMETER_${kind.toUpperCase()}_TOKEN)`,
    { 'www-authenticate': 'Bearer realm="ergometer"' },
  );
}

/** Creates the collector (not yet listening). */
export function createCollector(options: CollectorOptions): Collector {
  const { store } = options;
  const limits = resolveLimits(options.limits);
  const now = options.now ?? Date.now;
  const log = options.log ?? ((message: string) => process.stderr.write(`ergometer: ${message}\n`));
  const ingestTokens = new TokenSet(options.ingestTokens);
  const readTokens = new TokenSet(options.readTokens);
  const queueOptions: WriteQueueOptions = { ...DEFAULT_QUEUE_OPTIONS, ...options.queue };
  let queue: WriteQueue | undefined;
  const profiling = new ProfilingCoordinator({ ...DEFAULT_PROFILING_POLICY, ...options.profiling }, now);
  const metrics = new CollectorMetrics(
    () => queue?.depth() ?? { batches: 0, samples: 0 },
    () => profiling.counts(),
  );
  queue = new WriteQueue(store, queueOptions, (seconds) => metrics.observeInsert(seconds));
  const writeQueue = queue;
  const guard = new CardinalityGuard(limits.maxEndpointsPerService, limits.maxFlagKeysPerService);
  const seeding = new Map<string, Promise<void>>();
  const dashboard = new DashboardAssets(options.dashboardDir);
  let closing = false;
  let inFlight = 0;
  let idle: (() => void) | null = null;

  /** Seeds the guard with a service's stored names the first time this process sees the service. */
  function seedGuard(service: string): Promise<void> | undefined {
    if (guard.has(service)) return undefined;
    let promise = seeding.get(service);
    if (promise === undefined) {
      promise = (async () => {
        try {
          const [endpoints, flagRows] = await Promise.all([
            store.endpoints({ service }),
            store.aggregates({ service, flags: 'all', groupBy: ['flag'] }),
          ]);
          guard.seed(service, {
            endpoints: endpoints.map((row) => row.endpoint),
            flagKeys: flagRows.map((row) => row.flagKey).filter((key) => key !== ''),
          });
        } catch (error) {
          // Without the stored names the guard starts empty for this service: it still bounds what comes next.
          log(
            `cardinality guard: could not read the known names of service ${JSON.stringify(service)}: ${(error as Error).message}`,
          );
          guard.seed(service, { endpoints: [], flagKeys: [] });
        } finally {
          seeding.delete(service);
        }
      })();
      seeding.set(service, promise);
    }
    return promise;
  }

  /** Reads a body within the size limits and the bound on concurrent uploads. */
  async function readUpload(req: IncomingMessage, maxBytes: number, maxInflatedBytes: number): Promise<Buffer> {
    if (metrics.uploadsInProgress >= limits.maxConcurrentUploads) {
      throw new ErgometerError(
        'ERGOMETER_BUSY',
        429,
        `the collector is receiving ${metrics.uploadsInProgress} uploads already; retry the same batch after the Retry-After delay`,
        { 'retry-after': String(queueOptions.retryAfterSeconds) },
      );
    }
    metrics.uploadsInProgress++;
    try {
      return await readBody(req, maxBytes, maxInflatedBytes);
    } finally {
      metrics.uploadsInProgress--;
    }
  }

  async function postSamples(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const receivedAt = now();
    const body = await readUpload(req, limits.maxBodyBytes, limits.maxInflatedBytes);
    const batch = validateBatch(parseJsonBody(body, limits, 'ERGOMETER_BAD_BATCH'), limits, receivedAt);
    const seeded = seedGuard(batch.service);
    if (seeded !== undefined) await seeded;
    const refused = guard.apply(batch);
    const refusedSamples = refused.refusedEndpoint + refused.refusedFlag;
    if (refusedSamples + refused.refusedCounts > 0) {
      metrics.cardinalityRefusedEndpoint += refused.refusedEndpoint;
      metrics.cardinalityRefusedFlag += refused.refusedFlag;
      metrics.cardinalityRefusedCounts += refused.refusedCounts;
    }
    const result = await writeQueue.enqueue(batch);
    const answer: Record<string, unknown> = { accepted: result.stored ? result.samples : batch.samples.length };
    if (result.stored) {
      metrics.batchesAccepted++;
      metrics.samplesAccepted += result.samples;
    } else {
      metrics.batchesDuplicate++;
      answer.duplicate = true;
    }
    if (refusedSamples + refused.refusedCounts > 0) {
      answer.refused = {
        cardinality: refusedSamples,
        endpoints: refused.refusedEndpoint,
        flagKeys: refused.refusedFlag,
        counts: refused.refusedCounts,
      };
    }
    sendJson(res, 200, answer);
  }

  async function postDeploy(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const receivedAt = now();
    const body = await readBody(req, 64 * 1024, 64 * 1024);
    const deploy = validateDeploy(parseJsonBody(body, limits, 'ERGOMETER_BAD_DEPLOY'), limits, receivedAt);
    await store.recordDeploy(deploy);
    metrics.deploysAccepted++;
    sendJson(res, 200, { recorded: true, deploy });
  }

  async function postProfile(req: IncomingMessage, res: ServerResponse, params: URLSearchParams): Promise<void> {
    const receivedAt = now();
    const q = new QueryParams(params);
    const service = q.name('service', limits.maxNameLength);
    const commit = q.name('commit', limits.maxNameLength);
    const host = q.optionalName('host', limits.maxEndpointLength) ?? '';
    const metric = q.metric(true) as NonNullable<ReturnType<QueryParams['metric']>>;
    const { from, to } = q.range();
    if (from === undefined || to === undefined) {
      throw badRequest(
        'ERGOMETER_BAD_QUERY',
        "from, to: required query parameters (the profile's time range, ms since the epoch)",
      );
    }
    const pprof = await readUpload(req, limits.maxProfileBytes, limits.maxProfileBytes);
    if (pprof.length === 0)
      throw badRequest('ERGOMETER_BAD_PROFILE', 'body: empty; send the pprof file as the request body');
    // Decoded before anything is stored: a profile the server cannot read is refused (400 naming
    // the problem), never kept silently as bytes nobody can aggregate.
    const summary = summarizeProfile(decodeProfile(pprof, metric));
    const stored = await store.storeProfile({ service, commit, host, metric, from, to }, pprof, receivedAt, summary);
    metrics.profilesAccepted++;
    sendJson(res, 200, stored);
  }

  /** `POST /v1/profiling`: whether the asking process profiles; a check-in of one that decided. Stores nothing. */
  async function postCheckIn(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req, 16 * 1024, 16 * 1024);
    const checkIn = validateCheckIn(parseJsonBody(body, limits, 'ERGOMETER_BAD_CHECK_IN'), limits, now());
    sendJson(res, 200, profiling.checkIn(checkIn));
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '/';
    const queryAt = url.indexOf('?');
    const pathname = queryAt === -1 ? url : url.slice(0, queryAt);
    const params = new URLSearchParams(queryAt === -1 ? '' : url.slice(queryAt + 1));
    const method = req.method ?? 'GET';

    if (pathname === '/health') {
      if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed('GET');
      sendJson(res, closing ? 503 : 200, {
        status: closing ? 'closing' : 'ok',
        version: VERSION,
        backend: store.backend,
      });
      return;
    }
    if (pathname === '/metrics') {
      if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed('GET');
      const text = metrics.render();
      res.writeHead(200, {
        'content-type': 'text/plain; version=0.0.4; charset=utf-8',
        'content-length': Buffer.byteLength(text),
      });
      res.end(text);
      return;
    }
    if (dashboard.has(pathname)) {
      // The page shell and its script carry no data: they answer without a token and show the
      // login; every number then comes from the read API, which needs the read token.
      if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed('GET');
      const asset = await dashboard.answer(pathname);
      res.writeHead(asset.status, { ...asset.headers, 'content-length': asset.body.length });
      res.end(method === 'HEAD' ? undefined : asset.body);
      return;
    }
    if (!pathname.startsWith('/v1/')) throw notFound(pathname);
    if (closing) {
      throw new ErgometerError('ERGOMETER_SHUTTING_DOWN', 503, 'the collector is shutting down; retry shortly', {
        'retry-after': '1',
        connection: 'close',
      });
    }

    if (method === 'POST') {
      if (!ingestTokens.allows(req.headers.authorization)) throw unauthorized('ingest');
      if (pathname === '/v1/samples') return postSamples(req, res);
      if (pathname === '/v1/deploys') return postDeploy(req, res);
      if (pathname === '/v1/profiles') return postProfile(req, res, params);
      if (pathname === '/v1/profiling') return postCheckIn(req, res);
      throw isReadRoute(pathname) ? methodNotAllowed('GET') : notFound(pathname);
    }
    if (method === 'GET' || method === 'HEAD') {
      if (!readTokens.allows(req.headers.authorization)) throw unauthorized('read');
      const answer = await answerRead(store, pathname, params, now(), options.read);
      if (answer === undefined) {
        throw pathname === '/v1/samples' ? methodNotAllowed('POST') : notFound(pathname);
      }
      if (Buffer.isBuffer(answer)) {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': answer.length });
        res.end(answer);
        return;
      }
      sendJson(res, 200, answer);
      return;
    }
    throw methodNotAllowed(pathname === '/v1/samples' || pathname === '/v1/deploys' ? 'POST' : 'GET');
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    inFlight++;
    const isSamples = req.method === 'POST' && (req.url ?? '').startsWith('/v1/samples');
    try {
      await route(req, res);
    } catch (caught) {
      let error: ErgometerError;
      if (caught instanceof ErgometerError) {
        error = caught;
      } else {
        log(
          `internal error on ${req.method} ${(req.url ?? '').split('?')[0]}: ${(caught as Error)?.stack ?? String(caught)}`,
        );
        error = new ErgometerError('ERGOMETER_INTERNAL', 500, 'internal error in the collector; see its log');
      }
      if (isSamples) metrics.reject(REJECT_REASON[error.code] ?? 'bad_batch');
      if (!res.headersSent) sendError(res, error);
      else res.destroy();
    } finally {
      if (--inFlight === 0 && idle !== null) idle();
    }
  }

  const server = createServer(
    { requestTimeout: 60_000, headersTimeout: 20_000, keepAliveTimeout: 5_000 },
    (req, res) => {
      void handle(req, res);
    },
  );

  return {
    server,
    metrics,
    profiling,
    listen(port: number, host: string): Promise<AddressInfo> {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve(server.address() as AddressInfo);
        });
      });
    },
    async close(): Promise<void> {
      closing = true;
      const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (inFlight > 0) await new Promise<void>((resolve) => (idle = resolve));
      await writeQueue.drain();
      server.closeAllConnections();
      await serverClosed;
    },
  };
}

function isReadRoute(pathname: string): boolean {
  return /^\/v1\/(services|endpoints|commits|timeseries|deploys|profiles|compare|alerts|efficiency|breakdown|distribution)(\/|$)/.test(
    pathname,
  );
}

function notFound(pathname: string): ErgometerError {
  return new ErgometerError(
    'ERGOMETER_NOT_FOUND',
    404,
    `no route ${JSON.stringify(pathname.slice(0, 100))}; see SPEC §4 and §6 for the routes`,
  );
}

function methodNotAllowed(allow: string): ErgometerError {
  return new ErgometerError('ERGOMETER_METHOD_NOT_ALLOWED', 405, `use ${allow} on this route`, { allow });
}
