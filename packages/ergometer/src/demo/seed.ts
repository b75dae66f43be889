/**
 * The demo service's data: a small social app in one SQLite file (better-sqlite3), written once by
 * `ergometer demo` before any service process starts, then opened read-only by each of them.
 */
import { seededRandom } from '../stats/random';

/** The part of better-sqlite3's Database the demo uses (so the module is loaded lazily, once). */
export interface SqliteDatabase {
  prepare(sql: string): {
    all(...params: unknown[]): unknown[];
    get(...params: unknown[]): unknown;
    run(...params: unknown[]): unknown;
  };
  exec(sql: string): unknown;
  transaction<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void;
  pragma(sql: string): unknown;
  close(): void;
}
type DatabaseConstructor = new (file: string, options?: { readonly?: boolean }) => SqliteDatabase;

/** Loads better-sqlite3, or says how to get it (it is an optional dependency: a native build). */
export function loadSqlite(): DatabaseConstructor {
  try {
    return require('better-sqlite3') as DatabaseConstructor;
  } catch (error) {
    throw Object.assign(
      new Error(
        `the demo's sample service needs better-sqlite3 (an optional dependency of ergometer that did not install: ${(error as Error).message.split('\n')[0]}); run \`npm install better-sqlite3@12\` (it builds with node-gyp: a C++ compiler and python3)`,
      ),
      { code: 'ERGOMETER_DEMO_DEPENDENCY' },
    );
  }
}

export const DEMO_USERS = 2_000;
const POSTS = 16_000;
const COMMENTS = 40_000;
const FOLLOWS_PER_USER = 40;

const SYLLABLES = 'ka lo mi ner sta vu rin po te zal qui bo fa del shu gra ny ox pel tim'.split(' ');
/** A vocabulary of 2,000 made-up words; posts draw from it with a Zipf-like skew, as text does. */
const WORDS = Array.from({ length: 2_000 }, (_, i) => {
  let word = '';
  for (let n = i + 20; n > 0; n = Math.floor(n / SYLLABLES.length)) word += SYLLABLES[n % SYLLABLES.length];
  return word;
});
/** Words of middling frequency: what the load generator searches for. */
export const DEMO_SEARCH_WORDS: readonly string[] = WORDS.slice(30, 230);

/** Writes the demo database (users, follows, posts with a full-text index, comments). Deterministic. */
export function seedDemoDatabase(file: string): void {
  const Database = loadSqlite();
  const db = new Database(file);
  const random = seededRandom(42);
  const word = () => WORDS[Math.floor(WORDS.length * random() ** 3)] as string;
  const sentence = (n: number) => Array.from({ length: n }, word).join(' ');
  try {
    db.pragma('journal_mode = WAL');
    db.exec(`
      CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, bio TEXT NOT NULL, joined INTEGER NOT NULL);
      CREATE TABLE follows (follower INTEGER NOT NULL, followee INTEGER NOT NULL, PRIMARY KEY (follower, followee)) WITHOUT ROWID;
      CREATE INDEX follows_followee ON follows (followee);
      CREATE TABLE posts (id INTEGER PRIMARY KEY, author INTEGER NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
                          likes INTEGER NOT NULL, created INTEGER NOT NULL);
      CREATE INDEX posts_author ON posts (author, created DESC);
      CREATE VIRTUAL TABLE posts_fts USING fts5 (title, body, content='posts', content_rowid='id');
      CREATE TABLE comments (id INTEGER PRIMARY KEY, post INTEGER NOT NULL, parent INTEGER, author INTEGER NOT NULL,
                             body TEXT NOT NULL, created INTEGER NOT NULL);
      CREATE INDEX comments_post ON comments (post, created);
    `);
    const now = 1_764_000_000_000;
    const insert = db.transaction(() => {
      const user = db.prepare('INSERT INTO users VALUES (?, ?, ?, ?)');
      for (let id = 1; id <= DEMO_USERS; id++) user.run(id, `user${id}`, sentence(12), now - id * 86_400_000);
      const follow = db.prepare('INSERT OR IGNORE INTO follows VALUES (?, ?)');
      for (let id = 1; id <= DEMO_USERS; id++) {
        // Popular accounts (low ids) get followed more: a skewed graph, as real ones are.
        for (let k = 0; k < FOLLOWS_PER_USER; k++) follow.run(id, 1 + Math.floor(DEMO_USERS * random() ** 2));
      }
      const post = db.prepare('INSERT INTO posts VALUES (?, ?, ?, ?, ?, ?)');
      for (let id = 1; id <= POSTS; id++) {
        post.run(
          id,
          1 + Math.floor(DEMO_USERS * random() ** 2),
          sentence(6),
          sentence(40),
          Math.floor(1000 * random() ** 3),
          now - Math.floor(random() * 30 * 86_400_000),
        );
      }
      db.exec(`INSERT INTO posts_fts (rowid, title, body) SELECT id, title, body FROM posts`);
      const comment = db.prepare('INSERT INTO comments VALUES (?, ?, ?, ?, ?, ?)');
      for (let id = 1; id <= COMMENTS; id++) {
        const postId = 1 + Math.floor(POSTS * random() ** 1.5);
        comment.run(
          id,
          postId,
          random() < 0.4 && id > 1 ? Math.max(1, id - 1 - Math.floor(random() * 5)) : null,
          1 + Math.floor(DEMO_USERS * random()),
          sentence(15),
          now - Math.floor(random() * 30 * 86_400_000),
        );
      }
    });
    insert();
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    db.close();
  }
}
