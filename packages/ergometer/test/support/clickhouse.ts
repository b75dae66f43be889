/**
 * Test harness: real ClickHouse servers on 127.0.0.1, one temp dir each (config, data, logs),
 * started as child processes and killed (and their dirs removed) on teardown, also when a test
 * fails. Never touches the system service or /var/lib/clickhouse.
 *
 * Works with the Debian package (18.16: `/usr/sbin/clickhouse-server`) and with the newer single
 * binary (`clickhouse server`). ERGOMETER_CLICKHOUSE_BIN overrides the lookup.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface ClickHouseServer {
  /** HTTP interface, e.g. http://127.0.0.1:41234 */
  url: string;
  httpPort: number;
  tcpPort: number;
  dir: string;
}

export interface ClickHouseCluster {
  /** Name of the cluster in every node's remote_servers section. */
  name: string;
  /** One single-replica shard per server. */
  shards: ClickHouseServer[];
  stop(): Promise<void>;
}

export interface SingleClickHouse extends ClickHouseServer {
  stop(): Promise<void>;
}

interface Binary {
  file: string;
  args: string[];
}

/** Finds the server binary; throws with what to install when there is none. */
export function findClickHouseBinary(): Binary {
  const override = process.env.ERGOMETER_CLICKHOUSE_BIN;
  if (override)
    return override.endsWith('clickhouse') ? { file: override, args: ['server'] } : { file: override, args: [] };
  for (const file of ['/usr/bin/clickhouse', '/usr/local/bin/clickhouse']) {
    if (existsSync(file)) return { file, args: ['server'] };
  }
  for (const file of ['/usr/sbin/clickhouse-server', '/usr/bin/clickhouse-server']) {
    if (existsSync(file)) return { file, args: [] };
  }
  throw new Error(
    'ClickHouse server binary not found: `apt-get install -y clickhouse-server` (or set ERGOMETER_CLICKHOUSE_BIN)',
  );
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

interface NodePorts {
  http: number;
  tcp: number;
  interserver: number;
}

function configXml(dir: string, ports: NodePorts, cluster?: { name: string; tcpPorts: number[] }): string {
  const remote = cluster
    ? `<remote_servers><${cluster.name}>${cluster.tcpPorts
        .map((port) => `<shard><replica><host>127.0.0.1</host><port>${port}</port></replica></shard>`)
        .join('')}</${cluster.name}></remote_servers>`
    : '';
  // Small caches: several servers share a small test machine.
  return `<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>${dir}/log/server.log</log><errorlog>${dir}/log/server.err.log</errorlog><size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>${ports.http}</http_port>
  <tcp_port>${ports.tcp}</tcp_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>${ports.interserver}</interserver_http_port>
  <path>${dir}/data/</path>
  <tmp_path>${dir}/tmp/</tmp_path>
  <user_files_path>${dir}/user_files/</user_files_path>
  <format_schema_path>${dir}/format_schemas/</format_schema_path>
  <users_config>${dir}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  ${remote}
</yandex>
`;
}

const USERS_XML = `<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
`;

interface Running {
  server: ClickHouseServer;
  child: ChildProcess;
}

async function waitForPing(url: string, child: ChildProcess, dir: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const errLog = path.join(dir, 'log', 'server.err.log');
      const tail = existsSync(errLog) ? readFileSync(errLog, 'utf8').slice(-2000) : '';
      throw new Error(
        `clickhouse server exited (${child.exitCode ?? child.signalCode}) before answering /ping:\n${tail}`,
      );
    }
    try {
      const response = await fetch(`${url}/ping`);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline)
      throw new Error(`clickhouse server at ${url} did not answer /ping within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function startNode(
  ports: NodePorts,
  cluster: { name: string; tcpPorts: number[] } | undefined,
  running: Running[],
): Promise<ClickHouseServer> {
  const binary = findClickHouseBinary();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-ch-'));
  for (const sub of ['data', 'tmp', 'user_files', 'format_schemas', 'log']) mkdirSync(path.join(dir, sub));
  writeFileSync(path.join(dir, 'config.xml'), configXml(dir, ports, cluster));
  writeFileSync(path.join(dir, 'users.xml'), USERS_XML);
  const child = spawn(binary.file, [...binary.args, `--config-file=${path.join(dir, 'config.xml')}`], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr?.resume();
  const server: ClickHouseServer = {
    url: `http://127.0.0.1:${ports.http}`,
    httpPort: ports.http,
    tcpPort: ports.tcp,
    dir,
  };
  running.push({ server, child });
  // Last resort if the test process exits without teardown: never leave a server behind.
  const killAtExit = (): void => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', killAtExit);
  child.once('exit', () => process.removeListener('exit', killAtExit));
  await waitForPing(server.url, child, dir, 30_000);
  return server;
}

async function stopAll(running: Running[]): Promise<void> {
  await Promise.all(
    running.map(
      ({ child }) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
  for (const { server } of running) rmSync(server.dir, { recursive: true, force: true });
  running.length = 0;
}

/** Ports handed out by this process: a port the kernel gives twice is never given to two listeners. */
const handedOut = new Set<number>();

async function nodePorts(): Promise<NodePorts> {
  const distinct = async (): Promise<number> => {
    for (;;) {
      const port = await freePort();
      if (!handedOut.has(port)) {
        handedOut.add(port);
        return port;
      }
    }
  };
  return { http: await distinct(), tcp: await distinct(), interserver: await distinct() };
}

/**
 * Runs `start` again (with fresh ports) when a server lost one of its ports between our probe and its
 * own bind ("Address already in use": another process on the machine took it meanwhile).
 */
async function withPortRetries<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (error) {
      if (attempt >= 3 || !/Address already in use/.test((error as Error).message)) throw error;
    }
  }
}

/** Starts one ClickHouse server on loopback; `stop()` kills it and removes its directory. */
export function startClickHouse(): Promise<SingleClickHouse> {
  return withPortRetries(async () => {
    const running: Running[] = [];
    try {
      const server = await startNode(await nodePorts(), undefined, running);
      return { ...server, stop: () => stopAll(running) };
    } catch (error) {
      await stopAll(running);
      throw error;
    }
  });
}

/**
 * Starts `shards` servers, each with a `remote_servers` section naming all of them as one cluster
 * (one replica per shard, no ZooKeeper).
 */
export function startClickHouseCluster(shards = 2, name = 'ergometer'): Promise<ClickHouseCluster> {
  return withPortRetries(async () => {
    const running: Running[] = [];
    try {
      const ports: NodePorts[] = [];
      for (let i = 0; i < shards; i++) ports.push(await nodePorts());
      const cluster = { name, tcpPorts: ports.map((p) => p.tcp) };
      const servers = await Promise.all(ports.map((p) => startNode(p, cluster, running)));
      return { name, shards: servers, stop: () => stopAll(running) };
    } catch (error) {
      await stopAll(running);
      throw error;
    }
  });
}
