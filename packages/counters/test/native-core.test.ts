import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

// The rdpmc fast path cannot run on a machine without a PMU, so its pure half
// (sign extension, the mmap-page seqlock) is tested in C with a fake page and a
// fake rdpmc: native/test_core.c, compiled here with the system compiler.
const nativeDir = path.join(__dirname, '..', '..', 'native');
const source = path.join(nativeDir, 'test_core.c');
const baseFlags = ['-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror', '-I', nativeDir];
// UBSan turns signed overflow in the 64-bit arithmetic into a failure instead of a silent wrong count.
const sanitizerFlags = ['-fsanitize=undefined', '-fno-sanitize-recover=all'];

function compilerAvailable(): boolean {
  return spawnSync('cc', ['--version'], { stdio: 'ignore' }).status === 0;
}

test('native/test_core.c: rdpmc composition and the mmap-page seqlock, with a fake PMU', (t) => {
  if (!compilerAvailable()) {
    // The addon itself needs cc; CI sets ERGOMETER_COUNTERS_REQUIRE_NATIVE=1 and must not skip.
    assert.notEqual(process.env.ERGOMETER_COUNTERS_REQUIRE_NATIVE, '1', 'no C compiler (cc) on PATH');
    t.skip('no C compiler (cc) on PATH');
    return;
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ergometer-test-core-'));
  try {
    const binary = path.join(dir, 'test_core');
    let compiled = spawnSync('cc', [...baseFlags, ...sanitizerFlags, source, '-o', binary], { encoding: 'utf8' });
    if (compiled.status !== 0) {
      // Some toolchains ship without libubsan; the checks still run without it.
      t.diagnostic(`UBSan unavailable, compiling without it: ${compiled.stderr.trim().split('\n')[0] ?? ''}`);
      compiled = spawnSync('cc', [...baseFlags, source, '-o', binary], { encoding: 'utf8' });
    }
    assert.equal(compiled.status, 0, `cc failed:\n${compiled.stderr}`);

    const run = spawnSync(binary, [], { encoding: 'utf8' });
    const output = `${run.stdout}${run.stderr}`;
    assert.equal(run.status, 0, `test_core failed:\n${output}`);
    assert.doesNotMatch(output, /^not ok/m);
    assert.doesNotMatch(output, /runtime error/);
    const summary = /^# (\d+) checks, (\d+) failed$/m.exec(run.stdout);
    assert.ok(summary, `no summary line in:\n${output}`);
    assert.equal(summary[2], '0');
    assert.ok(Number(summary[1]) >= 28, `expected at least 28 checks, ran ${summary[1]}`);
    // The cases the fast path depends on must each have run, not just "some checks".
    for (const name of [
      'compose: all-ones 48-bit pmc is -1',
      'compose: wraps past INT64_MAX without overflow',
      'compose: width 64 takes pmc as a full signed value',
      'compose: width 0 (no rdpmc) returns offset',
      'mmap: normal read is offset + pmc',
      'mmap: cap_user_rdpmc=0 needs the syscall',
      'mmap: index=0 (event not on a PMU) needs the syscall',
      'mmap: seqlock change mid-read is retried',
      'mmap: seqlock retry returns the consistent new state',
    ]) {
      assert.match(run.stdout, new RegExp(`^ok \\d+ - ${name.replace(/[()^$*+?.[\]\\|{}]/g, '\\$&')}$`, 'm'));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
