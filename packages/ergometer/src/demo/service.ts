/**
 * The demo's sample service: a small social app (feed, profile, search, comments) on SQLite, with a
 * cache and OpenFeature flags, instrumented with @ergometer/agent. `ergometer demo` runs several of
 * these as child processes, one per "host", each with the commit it was "deployed" with.
 *
 * The versions differ the way real releases do:
 *  - v1: the baseline;
 *  - v2: `rankFeedItems` drops near-duplicate posts through a new `dropNearDuplicates`, which compares
 *    each title with the last few kept letter by letter: the feed gets dearer, and the extra CPU is
 *    spent in that function's own body;
 *  - v3: the dedupe drops only repeats of the previous post again (the fix), and search gains a semantic
 *    re-ranker behind the OpenFeature flag `search_rerank`, turned on for 20% of users;
 *  - v4: a quiet release (a different greeting in the profile page): nothing gets dearer.
 *
 * Every cost the agent records is real CPU spent by this process; nothing is simulated.
 *
 * Environment: DEMO_DB (the SQLite file), DEMO_VERSION (v1…v4), ERGOMETER_COLLECTOR, ERGOMETER_TOKEN,
 * ERGOMETER_COMMIT, ERGOMETER_HOST. Prints one JSON line `{"port": N}` on stdout once it listens. On the
 * IPC channel (when started with one), `{"type": "flush", "id": N}` writes every sample recorded so far to
 * the collector and answers `{"type": "flushed", "id": N}` once the collector has acknowledged them.
 */
import http from 'node:http';
import type { AgentOptions } from '@ergometer/agent';
import { start } from '@ergometer/agent';
import { InMemoryProvider, OpenFeature } from '@openfeature/server-sdk';
import { DEMO_SEARCH_WORDS, loadSqlite } from './seed';

export type DemoVersion = 'v1' | 'v2' | 'v3' | 'v4';

interface FeedRow {
  id: number;
  author: number;
  title: string;
  likes: number;
  created: number;
}
interface SearchRow {
  id: number;
  title: string;
  body: string;
  likes: number;
  rank: number;
}
interface CommentRow {
  id: number;
  parent: number | null;
  author: number;
  body: string;
  created: number;
}
interface RankedItem extends FeedRow {
  score: number;
}

const version = (process.env.DEMO_VERSION ?? 'v1') as DemoVersion;
const dbFile = process.env.DEMO_DB;
if (dbFile === undefined) throw new Error('DEMO_DB: the SQLite file of the demo service is required');

const agentOptions: AgentOptions = {
  service: process.env.ERGOMETER_SERVICE ?? 'social',
  sampleRate: 1,
  flushIntervalMs: 500,
  endpointSampleRates: { 'GET /warmup': 0 },
  // The function-level profiler, so that alerts name the function that got dearer. Continuous and in
  // 5 s profiles because the demo's phases last seconds (production: 10% of each minute).
  // Every process: the demo's fleet of three is within the collector's minimum per commit (2) plus one, and a
  // host restarted on the same commit must profile although its predecessor still counts for three periods.
  profile: { enabled: true, dutyCycle: 1, periodMs: 5_000, processFraction: 1 },
  userId: (req) => {
    const user = req.headers['x-user-id'];
    return typeof user === 'string' ? user : undefined;
  },
};
const agent = start(agentOptions);

const Database = loadSqlite();
const db = new Database(dbFile, { readonly: true });
const feedQuery = db.prepare(
  `SELECT p.id, p.author, p.title, p.likes, p.created FROM follows f JOIN posts p ON p.author = f.followee
   WHERE f.follower = ? ORDER BY p.created DESC LIMIT 120`,
);
const userQuery = db.prepare('SELECT id, name, bio, joined FROM users WHERE id = ?');
const userStatsQuery = db.prepare(
  `SELECT (SELECT count(*) FROM posts WHERE author = ?) AS posts,
          (SELECT count(*) FROM follows WHERE followee = ?) AS followers,
          (SELECT count(*) FROM follows WHERE follower = ?) AS following`,
);
const recentPostsQuery = db.prepare(
  'SELECT id, title, likes, created FROM posts WHERE author = ? ORDER BY created DESC LIMIT 10',
);
const searchQuery = db.prepare(
  `SELECT p.id, p.title, p.body, p.likes, posts_fts.rank AS rank FROM posts_fts JOIN posts p ON p.id = posts_fts.rowid
   WHERE posts_fts MATCH ? ORDER BY posts_fts.rank LIMIT 40`,
);
const commentsQuery = db.prepare(
  'SELECT id, parent, author, body, created FROM comments WHERE post = ? ORDER BY created LIMIT 200',
);

/** A small read-through cache with a time to live, as services keep in front of their database. */
class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; expiresAt: number }>();
  constructor(
    private readonly ttlMs: number,
    private readonly maxEntries: number,
  ) {}
  getOrLoad(key: string, load: () => V): V {
    const now = Date.now();
    const hit = this.entries.get(key);
    if (hit && hit.expiresAt > now) return hit.value;
    const value = load();
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest !== undefined) this.entries.delete(oldest);
    }
    this.entries.set(key, { value, expiresAt: now + this.ttlMs });
    return value;
  }
}
const profileCache = new TtlCache<string>(2_000, 500);

/**
 * Flags: `search_rerank` shipped dark (off for everyone) and v3 turns it on for 20% of users, by a
 * stable hash of the user id.
 */
const flagsReady = OpenFeature.setProviderAndWait(
  new InMemoryProvider({
    search_rerank: {
      variants: { on: true, off: false },
      defaultVariant: 'off',
      disabled: false,
      contextEvaluator: (ctx) => (version >= 'v3' && bucketOf(String(ctx.targetingKey ?? '')) < 20 ? 'on' : 'off'),
    },
  }),
);
OpenFeature.addHooks(agent.openFeatureHook());
const flags = OpenFeature.getClient();

function bucketOf(user: string): number {
  let h = 2166136261;
  for (let i = 0; i < user.length; i++) h = Math.imul(h ^ user.charCodeAt(i), 16777619);
  return (h >>> 0) % 100;
}

/**
 * Orders a user's feed: recency, likes and how often the viewer's follows overlap the author's, then
 * drops duplicates: v1 and v3 drop a post that repeats the one before it (same author and title); v2
 * calls {@link dropNearDuplicates}, which compares each post's title with the last few kept (the
 * regression).
 */
export function rankFeedItems(rows: FeedRow[], viewer: number, now: number): RankedItem[] {
  const items: RankedItem[] = rows.map((row) => {
    const ageHours = (now - row.created) / 3_600_000;
    const affinity = 1 + (((row.author * 2654435761) ^ viewer) % 7) / 10;
    return { ...row, score: (Math.log1p(row.likes) * affinity) / (1 + ageHours / 48) ** 1.5 };
  });
  items.sort((a, b) => b.score - a.score);
  const kept = version === 'v2' ? dropNearDuplicates(items) : dropRepeats(items);
  return kept.slice(0, 30);
}

/** v1 and v3: drops a post that repeats the one kept before it. */
function dropRepeats(items: RankedItem[]): RankedItem[] {
  const kept: RankedItem[] = [];
  for (const item of items) {
    const previous = kept[kept.length - 1];
    if (previous === undefined || previous.author !== item.author || previous.title !== item.title) kept.push(item);
  }
  return kept;
}

/**
 * v2's dedupe: drops a post whose title shares most of its letters with one of the DEDUPE_WINDOW posts
 * kept last, letter by letter: the feed's extra CPU, in this function's own body.
 *
 * A function of its own, as the change would be written: with this loop inside rankFeedItems, V8
 * compiled the loop on the stack (OSR) with a bail-out after it that every request then hit (~700
 * deoptimizations in 5 s, `--trace-deopt`), and a sampling profiler charges the deoptimizer's time
 * to the caller's line, so the root cause named the request handler.
 */
const DEDUPE_WINDOW = Number(process.env.DEMO_DEDUPE_WINDOW ?? 8);
function dropNearDuplicates(items: RankedItem[]): RankedItem[] {
  const kept: RankedItem[] = [];
  for (const item of items) {
    let duplicate = false;
    for (let k = Math.max(0, kept.length - DEDUPE_WINDOW); k < kept.length; k++) {
      const other = kept[k] as RankedItem;
      let same = 0;
      const n = Math.min(item.title.length, other.title.length);
      for (let i = 0; i < n; i++) if (item.title.charCodeAt(i) === other.title.charCodeAt(i)) same++;
      if (same > 0.9 * n) {
        duplicate = true;
        break;
      }
    }
    if (!duplicate) kept.push(item);
  }
  return kept;
}

/** Search results by full-text rank and likes. */
function scoreSearchResults(rows: SearchRow[]): SearchRow[] {
  return rows
    .map((row) => ({ ...row, rank: row.rank - Math.log1p(row.likes) / 10 }))
    .sort((a, b) => a.rank - b.rank)
    .slice(0, 20);
}

/**
 * v3's semantic re-ranker (behind `search_rerank`): hashed bag-of-words vectors of the query and
 * each result, ordered by cosine similarity. Real work, as an embedding lookup would be.
 */
export function rerankSemantic(rows: SearchRow[], query: string): SearchRow[] {
  const DIM = 256;
  // Two vectors for the whole call, refilled for each text: the re-ranker costs CPU, not garbage. (Its
  // garbage would be collected during whichever request allocates next — comments, profiles — and
  // charged there, as all GC is: the demo would then show v3 making every endpoint dearer.)
  const q = new Float64Array(DIM);
  const v = new Float64Array(DIM);
  const embed = (text: string, out: Float64Array): Float64Array => {
    out.fill(0);
    const words = text.split(' ');
    for (let w = 0; w < words.length; w++) {
      // Words and bigrams.
      const word = w > 0 ? `${words[w - 1]}_${words[w]}` : (words[w] as string);
      let h = 0;
      for (let i = 0; i < word.length; i++) h = (Math.imul(h, 31) + word.charCodeAt(i)) | 0;
      const a = (h >>> 0) % DIM;
      const b = (h >>> 7) % DIM;
      out[a] = (out[a] as number) + 1;
      out[b] = (out[b] as number) + 0.5;
    }
    return out;
  };
  embed(query, q);
  const cosine = (a: Float64Array, b: Float64Array) => {
    let dot = 0;
    let na = 0;
    let nb = 0;
    for (let i = 0; i < DIM; i++) {
      dot += (a[i] as number) * (b[i] as number);
      na += (a[i] as number) ** 2;
      nb += (b[i] as number) ** 2;
    }
    return dot / Math.sqrt(na * nb || 1);
  };
  // Title and body apart and together: three embeddings per result, as a re-ranker that scores
  // fields separately would. (The cost on the flagged side has to stand well clear of the demo's
  // 15% minimum effect, run after run.)
  const similarity = (row: SearchRow) =>
    cosine(q, embed(row.title, v)) + cosine(q, embed(row.body, v)) + cosine(q, embed(`${row.title} ${row.body}`, v));
  return rows
    .map((row) => ({ row, similarity: similarity(row) }))
    .sort((a, b) => b.similarity - a.similarity)
    .map((r) => r.row);
}

function renderProfile(id: number): string | undefined {
  const user = userQuery.get(id) as { id: number; name: string; bio: string; joined: number } | undefined;
  if (!user) return undefined;
  const stats = userStatsQuery.get(id, id, id);
  const recent = recentPostsQuery.all(id);
  const greeting = version === 'v4' ? `Hi, I am ${user.name}` : `Hello from ${user.name}`;
  return JSON.stringify({ ...user, greeting, stats, recent });
}

/** Comments as a thread: replies under their parent, each level by time. */
function buildCommentThread(rows: CommentRow[]): unknown[] {
  const byId = new Map<number, CommentRow & { replies: unknown[] }>();
  const roots: unknown[] = [];
  for (const row of rows) byId.set(row.id, { ...row, replies: [] });
  for (const node of byId.values()) {
    const parent = node.parent === null ? undefined : byId.get(node.parent);
    if (parent) parent.replies.push(node);
    else roots.push(node);
  }
  return roots;
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://demo');
  const parts = url.pathname.split('/').filter((p) => p !== '');
  const viewer = Number(req.headers['x-user-id'] ?? 0);
  // Warm-up traffic (sent before a new process takes real traffic, as a readiness check would) runs
  // the real code paths but is named GET /warmup, which the agent counts but does not sample.
  const warmUp = req.headers['x-demo-warmup'] === '1';
  const setRoute = (route: string) => agent.setRoute(warmUp ? '/warmup' : route);
  const send = (status: number, body: string) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(body);
  };
  if (req.method === 'GET' && parts[0] === 'feed' && parts.length === 2) {
    setRoute('/feed/:userId');
    const userId = Number(parts[1]);
    const rows = feedQuery.all(userId) as FeedRow[];
    send(200, JSON.stringify({ items: rankFeedItems(rows, viewer, Date.now()) }));
  } else if (req.method === 'GET' && parts[0] === 'profile' && parts.length === 2) {
    setRoute('/profile/:userId');
    const id = Number(parts[1]);
    const body = agent.time('cache', () => profileCache.getOrLoad(String(id), () => renderProfile(id) ?? ''));
    if (body === '') send(404, '{"error":"no such user"}');
    else send(200, body);
  } else if (req.method === 'GET' && parts[0] === 'search' && parts.length === 1) {
    setRoute('/search');
    const q = (url.searchParams.get('q') ?? '').replace(/[^a-z ]/g, '').trim();
    if (q === '') return send(400, '{"error":"q is required"}');
    let results = searchQuery.all(q.split(' ').join(' OR ')) as SearchRow[];
    if (await flags.getBooleanValue('search_rerank', false, { targetingKey: String(viewer) })) {
      results = rerankSemantic(results, q);
    }
    results = scoreSearchResults(results);
    send(200, JSON.stringify({ results: results.map((r) => ({ id: r.id, title: r.title })) }));
  } else if (req.method === 'GET' && parts[0] === 'posts' && parts[2] === 'comments' && parts.length === 3) {
    setRoute('/posts/:id/comments');
    const rows = commentsQuery.all(Number(parts[1])) as CommentRow[];
    send(200, JSON.stringify({ thread: buildCommentThread(rows) }));
  } else {
    send(404, '{"error":"not found"}');
  }
}

/** Work through every code path before taking traffic (JIT, SQLite page cache), as a readiness check would. */
function warmUp(): void {
  const now = Date.now();
  const warmWords = DEMO_SEARCH_WORDS;
  for (let i = 0; i < 300; i++) {
    const user = 1 + ((i * 37) % 2000);
    rankFeedItems(feedQuery.all(user) as FeedRow[], user, now);
    renderProfile(user);
    const word = warmWords[i % warmWords.length] as string;
    scoreSearchResults(rerankSemantic(searchQuery.all(word) as SearchRow[], word));
    buildCommentThread(commentsQuery.all(1 + (i % 500)) as CommentRow[]);
  }
}

async function main(): Promise<void> {
  await flagsReady;
  warmUp();
  const server = http.createServer(
    agent.http((req, res) => {
      handle(req, res).catch((error: unknown) => {
        res.statusCode = 500;
        res.end(String(error));
      });
    }),
  );
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    // Stop accepting; keep-alive connections close once their request is answered.
    server.close();
    server.closeIdleConnections();
    void agent
      .shutdown()
      .catch(() => undefined)
      .finally(() => {
        db.close();
        process.exit(0);
      });
  };
  process.on('SIGTERM', stop);
  // The demo asks for the samples of a phase before its detectors look at it.
  process.on('message', (message: { type?: unknown; id?: unknown }) => {
    if (message?.type !== 'flush') return;
    void agent
      .flush()
      .catch(() => undefined)
      .then(() => process.send?.({ type: 'flushed', id: message.id }));
  });
  process.on('disconnect', stop);
  // If the demo dies without stopping us (SIGKILL), do not outlive it.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) stop();
  }, 1_000).unref();
  process.on('SIGINT', () => undefined); // Ctrl-C reaches the whole group: the demo decides when we stop.
}

main().catch((error: unknown) => {
  process.stderr.write(`demo service ${version}: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
