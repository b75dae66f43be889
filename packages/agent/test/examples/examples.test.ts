/**
 * Every app in examples/ runs as the README says (node examples/<name>/server.js), answers its route,
 * and its agent writes samples named by the route template. Real processes, real frameworks, the
 * `file:` collector.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import type { WireBatch } from '../../src/export/wire';

const ROOT = path.resolve(__dirname, '../../../../..');
const EXAMPLES = ['express', 'fastify', 'koa', 'hono', 'http'];

function waitForListening(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      const url = /listening on (http:\/\/\S+)/.exec(line)?.[1];
      if (url) resolve(url.replace(/\/$/, ''));
    });
    child.once('exit', (code) => reject(new Error(`exited with ${code} before listening: ${stderr}`)));
  });
}

for (const name of EXAMPLES) {
  test(`examples/${name}/server.js answers and its agent records GET /hello/:name`, async (t) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), `ergometer-example-${name}-`));
    const samplesFile = path.join(dir, 'samples.ndjson');
    const child = spawn(process.execPath, [path.join(ROOT, 'examples', name, 'server.js')], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        PORT: '0',
        ERGOMETER_COLLECTOR: `file:${samplesFile}`,
        ERGOMETER_SAMPLE_RATE: '1',
        ERGOMETER_COMMIT: 'example',
      },
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    });
    const url = await waitForListening(child);
    for (const who of ['ada', 'grace', 'edsger']) {
      const response = await fetch(`${url}/hello/${who}`);
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { greeting: `hello ${who}`, words: 25 });
    }
    assert.equal((await fetch(`${url}/nowhere`)).status, 404);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, 'the example exits cleanly on SIGTERM');

    const batches = readFileSync(samplesFile, 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as WireBatch);
    assert.ok(batches.every((b) => b.service === `example-${name}` && b.commit === 'example'));
    const hello = batches.flatMap((b) => b.samples).filter((s) => s.endpoint === 'GET /hello/:name');
    assert.equal(hello.length, 3, 'one sample per request to the route, named by its template');
    assert.ok(hello.every((s) => s.cost > 0 && s.status === 200));
  });
}
