/**
 * `ergometer demo --quick --exit`, as CI and the README run it: a real sample service under load,
 * four releases, and exactly the expected alerts (the feed regression of v2 with dropNearDuplicates in its
 * root cause, the search_rerank flag of v3), none for the quiet v4. Then the quiet story alone (v3,
 * whose flag still makes search dearer for a fifth of users, then the v4 canary): the release that
 * changes nothing must not alert (once here, to keep CI's two Node versions in time).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

const CLI = path.resolve(__dirname, '../../src/cli/main.js');

function runDemo(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    // ERGOMETER_DEMO_NODE: the Node.js the demo's better-sqlite3 was built for (see scripts/test-all.sh).
    const node = process.env.ERGOMETER_DEMO_NODE || process.execPath;
    const child = spawn(node, [CLI, 'demo', '--quick', '--exit', '--port', '0', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, output }));
  });
}

test('ergometer demo --quick --exit: the expected alerts, their root cause, and no other', async () => {
  const { code, output } = await runDemo([]);
  assert.equal(code, 0, output);
  assert.match(output, /⚠ ALERT \[rollout\] social GET \/feed\/:userId: \+\d/);
  assert.match(output, /⚠ ALERT \[flag\] social GET \/search: \+\d/);
  const summary = output.slice(output.indexOf('Summary'));
  assert.match(
    summary,
    /GET \/feed\/:userId\s+rollout\s+\+[\d.]+%.*9b3e8d1 \(v2\) vs 4f1c2a7 \(v1\)\s+.*dropNearDuplicates/,
  );
  assert.match(summary, /GET \/search\s+flag\s+\+[\d.]+%.*search_rerank=on vs off/);
  assert.match(summary, /As scripted/);
  assert.match(summary, /Dashboard: http:\/\/127\.0\.0\.1:\d+\/\s+read token: erg_read_/);
});

test('the quiet release alone: no alert about it (the flag of v3 may alert: it is real)', async () => {
  const { code, output } = await runDemo(['--story', 'quiet']);
  assert.equal(code, 0, output);
  assert.doesNotMatch(output, /ALERT \[(rollout|trend)\]/);
  assert.doesNotMatch(output, /ALERT \[function\] social GET \/(feed|profile|comments)/);
});
