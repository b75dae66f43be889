import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Alert } from '../../src/detect/alert';
import { openDuckDbStore } from '../../src/store/duckdb/store';
import { HOUR, writeScenario } from '../detect/scenario';

const CLI = path.join(__dirname, '..', '..', 'src', 'cli', 'main.js');

function cli(args: string[]) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
}

describe('ergometer detect and compare on a DuckDB file', () => {
  let dir: string;
  let db: string;
  /** `ergometer compare` of the test service's v1 and v2, with `extra` arguments. */
  const compareV1V2 = (...extra: string[]) =>
    cli(['compare', '--db', db, '--service', 'shop', '--base', 'v1', '--head', 'v2', ...extra]);

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'ergometer-cli-detect-'));
    db = path.join(dir, 'ergometer.duckdb');
    const store = openDuckDbStore({ path: db });
    await store.init();
    const t0 = Date.now() - 8 * HOUR;
    const endpoints = { 'GET /feed/:id': 1_000_000, 'GET /search': 2_000_000 };
    await writeScenario(
      store,
      'shop',
      [
        { commit: 'v1', from: t0, to: t0 + 4 * HOUR, endpoints, perHour: 3000, shareB: 0 },
        {
          commit: 'v2',
          from: t0 + 4 * HOUR,
          to: t0 + 8 * HOUR,
          endpoints: { ...endpoints, 'GET /feed/:id': 1_100_000 },
          perHour: 3000,
          shareB: 0,
        },
      ],
      9,
    );
    await store.close();
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('--json prints the SPEC alert array; --fail-on-alert exits 1 on an open alert', () => {
    const run = cli(['detect', '--db', db, '--json', '--fail-on-alert']);
    assert.equal(run.status, 1, run.stderr);
    const alerts = JSON.parse(run.stdout) as Alert[];
    assert.equal(alerts.length, 1);
    const [alert] = alerts;
    assert.equal(alert?.kind, 'rollout');
    assert.equal(alert?.endpoint, 'GET /feed/:id');
    assert.deepEqual([alert?.baseline.commit, alert?.candidate.commit], ['v1', 'v2']);
    assert.equal(alert?.comparison, 'before-after');
    for (const key of ['id', 'metric', 'flag', 'changePct', 'ci', 'pValue', 'n', 'rootCause'])
      assert.ok(key in (alert ?? {}), key);
  });

  it('without --json it prints one readable line per alert and a footer', () => {
    const run = cli(['detect', '--db', db]);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /\[rollout, open\] shop GET \/feed\/:id: \+\d+\.\d+% CPU per request \(95% CI/);
    assert.match(run.stdout, /comparisons over 1 service\(s\); 1 open alert\(s\)/);
  });

  it('compare prints the per-endpoint table with intervals', () => {
    const run = compareV1V2();
    assert.equal(run.status, 0, run.stderr);
    const feed = run.stdout.split('\n').find((l) => l.startsWith('GET /feed/:id'));
    assert.ok(feed, run.stdout);
    assert.match(feed, /\+(9|10)\.\d\d%/);
    const json = compareV1V2('--json');
    const rows = JSON.parse(json.stdout) as Array<{ endpoint: string; ci: [number, number]; pValue: number }>;
    const search = rows.find((r) => r.endpoint === 'GET /search');
    assert.ok(search && search.ci[0] < 0 && search.ci[1] > 0);
    // --endpoint: that endpoint's row alone, the same comparison as in the whole table.
    const one = compareV1V2('--json', '--endpoint', 'GET /search');
    assert.deepEqual(
      (JSON.parse(one.stdout) as typeof rows).map((r) => [r.endpoint, r.ci, r.pValue]),
      [[search.endpoint, search.ci, search.pValue]],
    );
  });

  it('the intervals carry the configured confidence, in JSON and in words', () => {
    const config = path.join(dir, 'confidence.json');
    writeFileSync(config, JSON.stringify({ detectors: { confidence: 0.99 } }));
    const at99 = JSON.parse(cli(['detect', '--db', db, '--json', '--config', config]).stdout) as Alert[];
    const at95 = JSON.parse(cli(['detect', '--db', db, '--json']).stdout) as Alert[];
    assert.deepEqual([at95[0]?.confidence, at99[0]?.confidence], [0.95, 0.99]);
    const [narrow, wide] = [at95[0]?.ci as [number, number], at99[0]?.ci as [number, number]];
    assert.ok(wide[0] < narrow[0] && wide[1] > narrow[1], `99% ${wide} is not wider than 95% ${narrow}`);
    assert.match(at99[0]?.summary ?? '', /\(99% CI /);
    const compare = compareV1V2('--config', config);
    assert.match(compare.stdout.split('\n')[0] ?? '', /change\s+99% CI\s+p \(BH\)/);
  });

  it('--explain gives each look of one rollout test, against its threshold, in words or JSON', () => {
    const run = cli(['detect', '--db', db, '--service', 'shop', '--explain', 'GET /feed/:id']);
    assert.equal(run.status, 0, run.stderr);
    const lines = run.stdout.split('\n');
    // The latest commit by default: v2, rolled out 4 hours in.
    assert.match(lines[0] ?? '', /^The rollout test of shop v2 at GET \/feed\/:id, rolled out \d{4}-/);
    const looks = lines.filter((l) => l.includes(' look over '));
    assert.ok(looks.length >= 2, run.stdout);
    assert.match(
      looks.at(-1) ?? '',
      /against v1: \+\d+\.\d+% \(95% CI .*threshold 1% \(default\) → meets both conditions$/,
    );
    // The quiet endpoint: its early looks, on few samples, may show a few percent either way, but none is
    // significant at the share of alpha it may spend.
    const quiet = cli([
      'detect',
      '--db',
      db,
      '--service',
      'shop',
      '--commit',
      'v2',
      '--explain',
      'GET /search',
      '--json',
    ]);
    assert.equal(quiet.status, 0, quiet.stderr);
    const explanation = JSON.parse(quiet.stdout) as {
      commit: string;
      looks: Array<{ meetsConditions: boolean; missed: string[]; pForLook: number; alpha: number }>;
    };
    assert.equal(explanation.commit, 'v2');
    assert.ok(explanation.looks.length >= 2);
    assert.ok(
      explanation.looks.every((l) => !l.meetsConditions && l.missed.includes('significance') && l.pForLook >= l.alpha),
      quiet.stdout,
    );
    // Nothing to explain, said so; a missing --service is a usage error.
    const none = cli(['detect', '--db', db, '--service', 'shop', '--commit', 'v9', '--explain', 'GET /search']);
    assert.match(none.stdout, /no sample of commit v9 in the store/);
    const usage = cli(['detect', '--db', db, '--explain', 'GET /search']);
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /--explain needs --service/);
  });

  it('a bad config is refused with a message naming the key', () => {
    const config = path.join(dir, 'bad.json');
    writeFileSync(config, JSON.stringify({ detectors: { minEffectPct: -1 } }));
    const run = cli(['detect', '--db', db, '--config', config]);
    assert.equal(run.status, 1);
    assert.match(run.stderr, /detectors\.minEffectPct: expected a finite number ≥ 0.*ERGOMETER_BAD_CONFIG/);
  });
});
