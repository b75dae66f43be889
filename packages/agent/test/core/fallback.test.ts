/**
 * When the counters addon cannot load at all, the agent still works, on a
 * clearly labelled JavaScript fallback, and says so once.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { WireBatch } from '../../src/export/wire';

test('without the addon: samples are labelled js-cpu-usage and one warning is printed', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-fallback-'));
  try {
    const block = path.join(dir, 'block-addons.js');
    // Makes every native addon fail to load, as a missing build would.
    writeFileSync(
      block,
      "require('node:module')._extensions['.node'] = () => { throw new Error('simulated: addon not built'); };\n",
    );
    const app = path.join(dir, 'app.js');
    writeFileSync(
      app,
      `
      const http = require('node:http');
      const { start } = require(${JSON.stringify(require.resolve('@ergometer/agent'))});
      const agent = start({ service: 'fallback', collector: 'file:' + ${JSON.stringify(path.join(dir, 'out.ndjson'))}, sampleRate: 1, commit: 'c' });
      const server = http.createServer(agent.http((req, res) => { let x = 0; for (let i = 0; i < 1e6; i++) x += i; res.end(String(x)); }));
      server.listen(0, '127.0.0.1', async () => {
        const url = 'http://127.0.0.1:' + server.address().port + '/';
        for (let i = 0; i < 3; i++) await (await fetch(url)).text();
        await agent.shutdown();
        server.close();
      });
      `,
    );
    const result = spawnSync(process.execPath, ['--require', block, app], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(result.status, 0, result.stderr);
    const warnings = result.stderr.split('\n').filter((line) => line.includes('ERGOMETER_COUNTERS_FALLBACK'));
    assert.equal(warnings.length, 1, result.stderr);
    assert.match(result.stderr, /process\.cpuUsage\(\)/);
    const batches = readFileSync(path.join(dir, 'out.ndjson'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as WireBatch);
    const samples = batches.flatMap((b) => b.samples);
    assert.equal(samples.length, 3);
    for (const batch of batches) {
      assert.equal(batch.metric, 'cpu_ns');
      assert.equal(batch.agent.counter, 'js-cpu-usage');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
