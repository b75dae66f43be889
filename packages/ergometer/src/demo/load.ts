/**
 * The demo's load generator: a fixed number of requests in flight over keep-alive connections,
 * spread evenly over the hosts serving, with a realistic mix of endpoints and users (a few heavy
 * users, many light ones). Counts what it sent, per host and endpoint, for the progress display.
 */
import http from 'node:http';
import { seededRandom } from '../stats/random';
import type { HostProcess } from './fleet';
import { DEMO_SEARCH_WORDS, DEMO_USERS } from './seed';

export interface LoadStats {
  requests: number;
  errors: number;
  /** Requests per commit and endpoint route, e.g. `9b3e8d1 GET /feed/:userId`. */
  byCommitEndpoint: Map<string, number>;
}

export class LoadGenerator {
  readonly stats: LoadStats = { requests: 0, errors: 0, byCommitEndpoint: new Map() };
  private running = false;
  private loops: Promise<void>[] = [];
  private next = 0;
  private readonly random = seededRandom(7);
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  constructor(
    private readonly hosts: () => HostProcess[],
    private readonly concurrency: number,
  ) {}

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loops = Array.from({ length: this.concurrency }, () => this.loop());
  }

  /** Stops sending and waits for the requests in flight. */
  async pause(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
    this.loops = [];
  }

  close(): void {
    this.agent.destroy();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const hosts = this.hosts();
      const target = hosts[this.next++ % hosts.length];
      if (!target) {
        // No host serves yet (the first deploy is warming up).
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      const { path, route, viewer } = this.pickRequest();
      const ok = await this.get(target.port, path, viewer);
      this.stats.requests++;
      if (!ok) this.stats.errors++;
      const key = `${target.commit} ${route}`;
      this.stats.byCommitEndpoint.set(key, (this.stats.byCommitEndpoint.get(key) ?? 0) + 1);
    }
  }

  /** One request: who asks (a few heavy users, many light ones) and for what. */
  private pickRequest(): { path: string; route: string; viewer: number } {
    const r = this.random();
    const viewer = 1 + Math.floor(DEMO_USERS * this.random() ** 2);
    if (r < 0.25) return { path: `/feed/${viewer}`, route: 'GET /feed/:userId', viewer };
    if (r < 0.65) {
      const word = () => DEMO_SEARCH_WORDS[Math.floor(this.random() * DEMO_SEARCH_WORDS.length)] as string;
      const q = this.random() < 0.5 ? word() : `${word()} ${word()}`;
      return { path: `/search?q=${encodeURIComponent(q)}`, route: 'GET /search', viewer };
    }
    if (r < 0.825) {
      const profile = 1 + Math.floor(DEMO_USERS * this.random() ** 3);
      return { path: `/profile/${profile}`, route: 'GET /profile/:userId', viewer };
    }
    const post = 1 + Math.floor(4000 * this.random() ** 2);
    return { path: `/posts/${post}/comments`, route: 'GET /posts/:id/comments', viewer };
  }

  /** Sends `requests` warm-up requests (the same mix, marked as warm-up) to a process not yet in rotation. */
  async warmUp(port: number, requests: number): Promise<void> {
    let left = requests;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (left-- > 0) {
          const { path, viewer } = this.pickRequest();
          await this.get(port, path, viewer, true);
        }
      }),
    );
  }

  private get(port: number, path: string, viewer: number, warmUp = false): Promise<boolean> {
    const headers: Record<string, string> = { 'x-user-id': String(viewer) };
    if (warmUp) headers['x-demo-warmup'] = '1';
    return new Promise<boolean>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path, agent: this.agent, headers }, (res) => {
        res.resume();
        res.on('end', () => resolve((res.statusCode ?? 500) < 500));
        res.on('error', () => resolve(false));
      });
      req.setTimeout(10_000, () => req.destroy());
      req.on('error', () => resolve(false));
    });
  }
}
