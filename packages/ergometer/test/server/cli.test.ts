import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

const MAIN = path.resolve(__dirname, '../../src/cli/main.js');

function run(args: string[], env: NodeJS.ProcessEnv = {}) {
  return spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });
}

test('ergometer serve without tokens generates them into a 0600 file beside the database, never prints them, and deploy uses them', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ergometer-cli-'));
  const args = ['serve', '--port', '0', '--db', path.join(dir, 'data.duckdb'), '--profile-min-processes', '1'];
  const child = spawn(process.execPath, [MAIN, ...args, '--profile-process-fraction', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: dir,
    env: { PATH: process.env.PATH },
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
    await rm(dir, { recursive: true, force: true });
  });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(stdout);
      if (match && stdout.includes('tokens')) resolve(match[1] as string);
    });
    void exited.then((code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
  });
  const tokenFile = path.join(dir, 'data.tokens.json');
  assert.match(stdout, new RegExp(`tokens generated and stored ${tokenFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.equal((await stat(tokenFile)).mode & 0o777, 0o600);
  const tokens = JSON.parse(await readFile(tokenFile, 'utf8')) as { ingestTokens: string[]; readTokens: string[] };

  const deployed = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const deploy = spawn(
      process.execPath,
      [
        MAIN,
        'deploy',
        '--service',
        'api',
        '--commit',
        'c9',
        '--ts',
        '1700000000000',
        '--collector',
        url,
        '--token-file',
        tokenFile,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    deploy.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    deploy.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    deploy.once('exit', (code) => resolve({ code, out, err }));
  });
  assert.equal(deployed.code, 0, deployed.err);
  assert.match(deployed.out, /recorded deploy of api at commit c9/);
  const read = await fetch(`${url}/v1/deploys?service=api`, {
    headers: { authorization: `Bearer ${tokens.readTokens[0]}` },
  });
  assert.deepEqual(await read.json(), [{ service: 'api', commit: 'c9', ts: 1700000000000 }]);

  // --profile-min-processes 1 --profile-process-fraction 0: one process of a commit profiles, no other.
  const ask = async (instance: string) => {
    const response = await fetch(`${url}/v1/profiling`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tokens.ingestTokens[0]}`, 'content-type': 'application/json' },
      body: JSON.stringify({ service: 'api', commit: 'c9', host: 'h', instance, state: 'asking', checkInMs: 60_000 }),
    });
    return response.json();
  };
  assert.deepEqual(
    [await ask('a'), await ask('b'), await ask('c')],
    [{ profile: true }, { profile: false }, { profile: false }],
  );

  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  for (const token of [...tokens.ingestTokens, ...tokens.readTokens]) {
    assert.ok(!stdout.includes(token) && !stderr.includes(token), 'a token was printed');
  }
  assert.match(stdout, /SIGTERM: draining and closing the store[\s\S]*stopped/);
});

test('usage errors exit 2 with the command usage; a wrong token or an unreachable collector exit 1', () => {
  const badPort = run(['serve', '--port', 'abc']);
  assert.equal(badPort.status, 2);
  assert.match(badPort.stderr, /--port: expected an integer from 0 to 65535, got "abc" \(ERGOMETER_USAGE\)/);
  assert.match(badPort.stderr, /Usage: ergometer serve/);
  assert.equal(run(['serve', '--frobnicate']).status, 2);
  const badFraction = run(['serve', '--profile-process-fraction', '1.5']);
  assert.equal(badFraction.status, 2);
  assert.match(badFraction.stderr, /--profile-process-fraction: expected a number from 0 to 1, got "1\.5"/);
  assert.equal(run(['serve', '--profile-min-processes', '-1']).status, 2);
  assert.equal(run(['serve', '--db', 'a', '--clickhouse', 'http://x']).status, 2);
  const noService = run(['deploy', '--commit', 'c']);
  assert.equal(noService.status, 2);
  assert.match(noService.stderr, /--service is required/);
  const unreachable = run([
    'deploy',
    '--service',
    's',
    '--commit',
    'c',
    '--collector',
    'http://127.0.0.1:1',
    '--token',
    't',
  ]);
  assert.equal(unreachable.status, 1);
  assert.match(unreachable.stderr, /could not reach the collector at http:\/\/127\.0\.0\.1:1/);
  assert.equal(run(['serve', '--help']).status, 0);
});

test('serve --clickhouse with no server there fails clearly, and leaves no token file behind', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'ergometer-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const result = spawnSync(process.execPath, [MAIN, 'serve', '--clickhouse', 'http://127.0.0.1:1'], {
    encoding: 'utf8',
    cwd: dir,
    env: { PATH: process.env.PATH },
  });
  assert.equal(result.status, 1);
  assert.match(result.stderr, /127\.0\.0\.1:1.*\(ERGOMETER_STORE_UNAVAILABLE\)/s);
  await assert.rejects(stat(path.join(dir, 'ergometer.tokens.json')), { code: 'ENOENT' });
});
