/**
 * A collector on 127.0.0.1 that the tests steer into misbehaving. In `ok` mode it is what SPEC §4 asks of
 * `POST /v1/samples`: bearer token, gzip, stores each batchId once and answers `200 {"accepted": n}` also
 * for a repeat. Every other mode is one way a real collector (or what stands between) fails.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import zlib from 'node:zlib';
import { decodeColumns, type WireColumns } from '../../src/export/columns';
import type { WireBatch } from '../../src/export/wire';

export type CollectorMode =
  /** Stores and answers 200. */
  | 'ok'
  /** Not listening: connections are refused. */
  | 'refuse'
  /** Accepts the request and never answers. */
  | 'hang'
  /** Stores, then answers after `slowMs`. */
  | 'slow'
  /** 500 without storing. */
  | 'status-500'
  /** 429 with `Retry-After: retryAfter`, without storing. */
  | 'status-429'
  /**
   * 400 without storing: a batch the server finds invalid, not worth retrying. A repeat of a batch
   * stored earlier (valid then) gets 200, as from the real server.
   */
  | 'status-400'
  /** Bytes that are not HTTP, then closes. */
  | 'garbage'
  /** Stores, then answers 200 with a body that is not JSON. */
  | 'garbage-body'
  /** Stores, sends the head and part of a promised body, then closes the connection. */
  | 'close-mid-answer'
  /** Closes the connection while the request body is arriving; nothing stored. */
  | 'close-mid-request';

/** One POST that reached the collector with a readable body. */
export interface Arrival {
  batchId: string;
  atMs: number;
  mode: CollectorMode;
  /** Whether this arrival was stored (false: refused by the mode, or a repeat). */
  stored: boolean;
}

export class FaultyCollector {
  mode: CollectorMode = 'ok';
  slowMs = 200;
  retryAfter = '1';
  readonly token: string;
  /** Stored batches by batchId: a repeat is not stored again. */
  readonly batches = new Map<string, WireBatch>();
  readonly arrivals: Arrival[] = [];
  /** Requests of any kind, readable or not. */
  requests = 0;
  private server: http.Server;
  private readonly sockets = new Set<Socket>();
  private port = 0;

  private constructor(token: string) {
    this.token = token;
    this.server = this.createServer();
  }

  static async start(token = 'test-token'): Promise<FaultyCollector> {
    const collector = new FaultyCollector(token);
    await collector.listen(0);
    return collector;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Samples stored, over distinct batches. */
  get samplesStored(): number {
    let n = 0;
    for (const batch of this.batches.values()) n += batch.samples.length;
    return n;
  }

  /** Sum of `agent.dropped` over distinct batches. */
  get droppedReported(): number {
    let n = 0;
    for (const batch of this.batches.values()) n += batch.agent.dropped;
    return n;
  }

  /** Switches mode; `refuse` stops listening (and cuts open connections), leaving it listens again. */
  async setMode(mode: CollectorMode): Promise<void> {
    if (mode === 'refuse' && this.mode !== 'refuse') await this.close();
    if (mode !== 'refuse' && this.mode === 'refuse') {
      this.server = this.createServer();
      await this.listen(this.port);
    }
    this.mode = mode;
  }

  async stop(): Promise<void> {
    if (this.mode !== 'refuse') await this.close();
  }

  private createServer(): http.Server {
    const server = http.createServer((req, res) => this.handle(req, res));
    server.keepAliveTimeout = 60_000;
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    return server;
  }

  private listen(port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        this.port = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  private close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const socket of this.sockets) socket.destroy();
    });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.requests++;
    let mode = this.mode;
    if (mode === 'close-mid-request') {
      req.once('data', () => req.socket.destroy());
      return;
    }
    if (mode === 'garbage') {
      req.resume();
      req.socket.end('HTTP/1.1 ??? \u0000\u0001 not http at all\r\n\r\n');
      return;
    }
    if (req.method !== 'POST' || req.url !== '/v1/samples') {
      res.writeHead(404).end();
      return;
    }
    if (req.headers.authorization !== `Bearer ${this.token}`) {
      req.resume();
      res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"bad token"}');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      let batch: WireBatch;
      try {
        const raw = Buffer.concat(chunks);
        const json = req.headers['content-encoding'] === 'gzip' ? zlib.gunzipSync(raw) : raw;
        const parsed = JSON.parse(json.toString('utf8')) as Omit<WireBatch, 'v' | 'samples'> & {
          v: 1 | 2;
          samples: WireBatch['samples'] | WireColumns;
        };
        // What the tests look at is the samples, in v1's shape whichever version carried them.
        batch = {
          ...parsed,
          v: 1,
          samples: Array.isArray(parsed.samples) ? parsed.samples : decodeColumns(parsed.samples),
        };
      } catch (error) {
        res.writeHead(400).end(JSON.stringify({ error: String(error) }));
        return;
      }
      const repeat = this.batches.has(batch.batchId);
      if (mode === 'status-400' && repeat) mode = 'ok';
      const storesInMode = mode === 'ok' || mode === 'slow' || mode === 'garbage-body' || mode === 'close-mid-answer';
      if (storesInMode && !repeat) this.batches.set(batch.batchId, batch);
      this.arrivals.push({ batchId: batch.batchId, atMs: Date.now(), mode, stored: storesInMode && !repeat });
      const accepted = JSON.stringify({ accepted: batch.samples.length });
      switch (mode) {
        case 'hang':
          return;
        case 'slow':
          setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(accepted), this.slowMs);
          return;
        case 'status-500':
          res.writeHead(500).end('{"error":"internal"}');
          return;
        case 'status-429':
          res.writeHead(429, { 'retry-after': this.retryAfter }).end('{"error":"slow down"}');
          return;
        case 'status-400':
          res.writeHead(400).end('{"error":"samples[0].cost: expected a number"}');
          return;
        case 'garbage-body':
          res.writeHead(200, { 'content-type': 'application/json' }).end('<html>definitely not json');
          return;
        case 'close-mid-answer':
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
          res.write('{"accepted":');
          setImmediate(() => req.socket.destroy());
          return;
        default:
          res.writeHead(200, { 'content-type': 'application/json' }).end(accepted);
      }
    });
  }
}
