/**
 * Real backend servers for tests, each started on 127.0.0.1 on a free port with
 * its data in a temp folder, and stopped (process killed, folder removed) by
 * `stop()`. They need the Debian packages postgresql (15), redis-server and
 * memcached; when a binary is missing, `start*` rejects with a message naming
 * the package to install.
 *
 *   const pg = await startPostgres();   // pg.port, pg.url; user postgres, trust auth
 *   try { ... } finally { await pg.stop(); }
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** A server started for a test. */
export interface TestServer {
  readonly port: number;
  /** Kills the server and removes its temp folder. Safe to call twice. */
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (free when asked: start the server soon after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The uid/gid to run a server as that refuses to run as root (postgres), or undefined when not root. */
function unprivilegedUser(name: string): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const user of [name, 'nobody']) {
    try {
      const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8' }).trim());
      if (Number.isInteger(uid) && Number.isInteger(gid)) return { uid, gid };
    } catch {
      // no such user: try the next
    }
  }
  throw new Error(`running as root and neither "${name}" nor "nobody" exists to run the server as`);
}

function requireBinary(file: string, debianPackage: string): string {
  if (!existsSync(file)) {
    throw new Error(
      `${file} not found: install the Debian package ${debianPackage} (apt-get install -y ${debianPackage})`,
    );
  }
  return file;
}

/** Finds `name` on PATH, or fails naming the Debian package. */
function onPath(name: string, debianPackage: string): string {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const file = path.join(dir, name);
    if (dir !== '' && existsSync(file)) return file;
  }
  return requireBinary(name, debianPackage);
}

/** A child process that resolves `ready` once `isReady(output)` is true, and rejects if it exits first. */
class ServerProcess {
  private output = '';
  readonly exited: Promise<void>;

  constructor(
    readonly child: ChildProcess,
    private readonly what: string,
  ) {
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    const collect = (chunk: string) => {
      // Bounded: only the tail matters for error messages and readiness.
      this.output = (this.output + chunk).slice(-64 * 1024);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  get log(): string {
    return this.output;
  }

  /** Waits until `probe()` resolves true, polling, or fails after `timeoutMs` or when the process exits. */
  async waitUntil(probe: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => {
      exited = true;
    });
    while (Date.now() < deadline) {
      if (exited) throw new Error(`${this.what} exited before it was ready:\n${this.output}`);
      if (await probe()) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`${this.what} not ready within ${timeoutMs} ms:\n${this.output}`);
  }

  async kill(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

/** True when a TCP connection to 127.0.0.1:port succeeds. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `ergometer-${prefix}-`));
}

/**
 * Servers not stopped yet. If the test process exits without stopping them (an
 * uncaught exception, a test that forgot, a runner that gives up), they are
 * killed and their folders removed on the way out, not left running.
 */
const running = new Map<ServerProcess, string>();
let exitHookInstalled = false;

function killOnExit(server: ServerProcess, dir: string): void {
  running.set(server, dir);
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const [leftover, leftoverDir] of running) {
      leftover.child.kill('SIGKILL');
      rmSync(leftoverDir, { recursive: true, force: true });
    }
  });
}

function stopper(server: ServerProcess, dir: string, signal: NodeJS.Signals): () => Promise<void> {
  killOnExit(server, dir);
  let stopping: Promise<void> | undefined;
  return () => {
    stopping ??= server.kill(signal).finally(() => {
      running.delete(server);
      rmSync(dir, { recursive: true, force: true });
    });
    return stopping;
  };
}

/** Starts a command in `dir`, waits for `ready`, and returns it; on failure it kills it and removes `dir`. */
async function startServer(
  what: string,
  command: string,
  args: string[],
  dir: string,
  port: number,
  options: { user?: { uid: number; gid: number }; stopSignal?: NodeJS.Signals; ready?: (log: string) => boolean },
): Promise<TestServer> {
  const child = spawn(command, args, {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.user ?? {}),
  });
  const server = new ServerProcess(child, what);
  const stop = stopper(server, dir, options.stopSignal ?? 'SIGTERM');
  try {
    const ready = options.ready;
    await server.waitUntil(async () => (await canConnect(port)) && (ready === undefined || ready(server.log)));
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, stop };
}

/** PostgreSQL on 127.0.0.1, user `postgres`, no password (trust), database `postgres`. */
export interface PostgresServer extends TestServer {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` */
  readonly url: string;
}

function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(path.join(root, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) requireBinary(path.join(root, '15', 'bin', 'initdb'), 'postgresql');
  return path.join(root, versions[0]!, 'bin');
}

/**
 * initdb in a temp folder, then `postgres` on a free port (TCP on 127.0.0.1 only,
 * its socket in the temp folder, fsync off). As root, both run as the `postgres`
 * user (or `nobody`), which owns the folder: PostgreSQL refuses to run as root.
 */
export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBinDir();
  const dir = tempDir('postgres');
  const user = unprivilegedUser('postgres');
  if (user !== undefined) chownSync(dir, user.uid, user.gid);
  const dataDir = path.join(dir, 'data');
  try {
    execFileSync(
      path.join(bin, 'initdb'),
      ['-D', dataDir, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync', '--no-instructions'],
      { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], ...(user ?? {}) },
    );
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`initdb failed: ${stderr || String(error)}`);
  }
  const port = await freePort();
  const server = await startServer(
    'postgres',
    path.join(bin, 'postgres'),
    [
      '-D',
      dataDir,
      '-p',
      String(port),
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      `unix_socket_directories=${dir}`,
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
    ],
    dir,
    port,
    // SIGINT: "fast" shutdown, without waiting for clients to disconnect.
    { user, stopSignal: 'SIGINT', ready: (log) => log.includes('ready to accept connections') },
  );
  return { ...server, url: `postgres://postgres@127.0.0.1:${port}/postgres` };
}

/**
 * redis-server on a free port, no persistence, its working folder a temp folder.
 * `--hz 500`: Redis times out blocking commands (BLPOP with a timeout, which
 * tests use as a server-side sleep) from its cron, 10 times a second by
 * default, so a 30 ms BLPOP would return after up to 100 ms.
 */
export async function startRedis(): Promise<TestServer> {
  const command = onPath('redis-server', 'redis-server');
  const dir = tempDir('redis');
  const port = await freePort();
  return startServer(
    'redis-server',
    command,
    [
      ...['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      ...['--dir', dir, '--hz', '500'],
    ],
    dir,
    port,
    {},
  );
}

/** memcached on a free TCP port (UDP off), as `nobody` when root. */
export async function startMemcached(): Promise<TestServer> {
  const command = onPath('memcached', 'memcached');
  const dir = tempDir('memcached');
  const port = await freePort();
  const args = ['-p', String(port), '-U', '0', '-l', '127.0.0.1', '-m', '16'];
  if (process.getuid?.() === 0) args.push('-u', 'nobody');
  return startServer('memcached', command, args, dir, port, {});
}

/**
 * A downstream HTTP service: `GET /delay?headersMs=A&bodyMs=B` sends the headers
 * after A ms and the end of the body B ms later; anything else answers 404.
 */
export async function startHttpBackend(): Promise<TestServer & { readonly url: string }> {
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/delay') {
      res.writeHead(404).end();
      return;
    }
    const headersMs = Number(url.searchParams.get('headersMs') ?? 0);
    const bodyMs = Number(url.searchParams.get('bodyMs') ?? 0);
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first part\n');
      setTimeout(() => res.end('last part\n'), bodyMs);
    }, headersMs);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  let stopping: Promise<void> | undefined;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      });
      return stopping;
    },
  };
}
