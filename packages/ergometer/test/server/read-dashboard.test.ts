import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { DASHBOARD_CSP } from '../../src/dashboard/assets';
import { binOf } from '../../src/store/histogram';
import type { IngestBatch } from '../../src/store/types';
import { HOUR, type Phase, scenarioBatches, toWire } from '../detect/scenario';
import { startTestCollector, type TestCollector } from './harness';

/**
 * The read routes the dashboard added (/v1/breakdown, /v1/distribution, timeseries groupBy,
 * compare by flag variants) over batches POSTed to a real collector, checked against the samples
 * that were sent.
 */

const T0 = Math.floor(Date.now() / HOUR) * HOUR - 4 * HOUR;
const PHASES: Phase[] = [
  {
    commit: 'c1',
    from: T0,
    to: T0 + 2 * HOUR,
    endpoints: { 'GET /a': 1_000_000, 'GET /b': 300_000 },
    perHour: 300,
    shareB: 0.4,
    flag: { key: 'ranker', variant: 'on', control: 'off', share: 0.3, factor: {} },
  },
  {
    commit: 'c2',
    from: T0 + 2 * HOUR,
    to: T0 + 4 * HOUR,
    endpoints: { 'GET /a': 1_000_000, 'GET /b': 300_000 },
    perHour: 300,
    shareB: 0.4,
    flag: { key: 'ranker', variant: 'on', control: 'off', share: 0.3, factor: { 'GET /a': 1.5 } },
  },
];

async function filled(
  t: Parameters<typeof startTestCollector>[0],
  phases = PHASES,
): Promise<{ c: TestCollector; batches: IngestBatch[] }> {
  const c = await startTestCollector(t);
  const batches = scenarioBatches('svc', phases, 3);
  for (const batch of batches) {
    const answer = await c.post('/v1/samples', toWire(batch), { gzip: true });
    assert.equal(answer.status, 200, answer.text);
  }
  return { c, batches };
}

/** The samples sent, flattened with their batch's commit and host class. */
function sent(batches: IngestBatch[]) {
  return batches.flatMap((b) => b.samples.map((s) => ({ ...s, commit: b.commit, hostClass: b.hostClass })));
}

function close(actual: number, expected: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= 1e-9 * Math.abs(expected), `${what}: ${actual} vs ${expected}`);
}

describe('read routes for the dashboard', () => {
  it('/v1/breakdown: cost per flag variant and host class, per endpoint or merged', async (t) => {
    const { c, batches } = await filled(t);
    const samples = sent(batches).filter((s) => s.commit === 'c2');
    const answer = await c.get('/v1/breakdown?service=svc&endpoint=GET%20/a&commit=c2');
    assert.equal(answer.status, 200, answer.text);
    const body = answer.json as {
      endpoint: string;
      flags: Array<{ key: string; variant: string; samples: number; costMean: number }>;
      hostClasses: Array<{ hostClass: string; samples: number; costMean: number }>;
    };
    assert.equal(body.endpoint, 'GET /a');
    assert.deepEqual(
      body.flags.map((f) => [f.key, f.variant]),
      [
        ['ranker', 'off'],
        ['ranker', 'on'],
      ],
    );
    for (const f of body.flags) {
      const mine = samples.filter((s) => s.endpoint === 'GET /a' && s.flags.ranker === f.variant);
      assert.equal(f.samples, mine.length);
      close(f.costMean, mine.reduce((t, s) => t + s.cost, 0) / mine.length, f.variant);
    }
    const on = body.flags.find((f) => f.variant === 'on');
    const off = body.flags.find((f) => f.variant === 'off');
    assert.ok(on && off && on.costMean > off.costMean * 1.3, 'the dearer variant shows');
    for (const h of body.hostClasses) {
      const mine = samples.filter((s) => s.endpoint === 'GET /a' && s.hostClass === h.hostClass);
      assert.equal(h.samples, mine.length);
      close(h.costMean, mine.reduce((t, s) => t + s.cost, 0) / mine.length, h.hostClass);
    }
    // No endpoint: every endpoint merged.
    const merged = (await c.get('/v1/breakdown?service=svc&commit=c2')).json as typeof body;
    assert.equal(merged.endpoint, null);
    assert.equal(
      merged.hostClasses.reduce((t, h) => t + h.samples, 0),
      samples.length,
    );
  });

  it('/v1/distribution: the cost histogram of one endpoint and commit, bins as the samples fall', async (t) => {
    const { c, batches } = await filled(t);
    const mine = sent(batches).filter((s) => s.commit === 'c1' && s.endpoint === 'GET /b');
    const answer = await c.get('/v1/distribution?service=svc&endpoint=GET%20/b&commit=c1');
    assert.equal(answer.status, 200, answer.text);
    const body = answer.json as {
      samples: number;
      costMean: number;
      metric: string;
      bins: Array<{ lo: number; hi: number; count: number }>;
    };
    assert.equal(body.samples, mine.length);
    assert.equal(body.metric, 'cpu_ns');
    close(body.costMean, mine.reduce((t, s) => t + s.cost, 0) / mine.length, 'mean');
    const expected = new Map<number, number>();
    for (const s of mine) expected.set(binOf(s.cost), (expected.get(binOf(s.cost)) ?? 0) + 1);
    assert.equal(body.bins.length, expected.size);
    for (const bin of body.bins) {
      assert.ok(bin.lo < bin.hi);
      assert.equal(bin.count, expected.get(binOf(Math.sqrt(bin.lo * bin.hi))), `bin from ${bin.lo}`);
    }
    // One variant of a flag.
    const on = (await c.get('/v1/distribution?service=svc&endpoint=GET%20/b&commit=c1&flag=ranker&variant=on'))
      .json as typeof body;
    assert.equal(on.samples, mine.filter((s) => s.flags.ranker === 'on').length);
    const half = await c.get('/v1/distribution?service=svc&endpoint=GET%20/b&flag=ranker');
    assert.equal(half.status, 400);
    assert.match(half.text, /give both/);
    assert.equal((await c.get('/v1/distribution?service=svc')).status, 400);
  });

  it('/v1/timeseries groupBy: none gives one point per bucket, endpoint one series per endpoint', async (t) => {
    const { c, batches } = await filled(t);
    const all = sent(batches);
    const range = `from=${T0}&to=${T0 + 4 * HOUR}&bucketMs=${HOUR}`;
    const none = (await c.get(`/v1/timeseries?service=svc&endpoint=GET%20/a&groupBy=none&${range}`)).json as {
      points: Array<{ bucket: number; samples: number; commit: string; hostClass: string }>;
    };
    assert.equal(none.points.length, 4);
    assert.equal(new Set(none.points.map((p) => p.bucket)).size, 4);
    assert.ok(none.points.every((p) => p.commit === '' && p.hostClass === ''));
    assert.equal(
      none.points.reduce((t, p) => t + p.samples, 0),
      all.filter((s) => s.endpoint === 'GET /a').length,
    );
    const byEndpoint = (await c.get(`/v1/timeseries?service=svc&groupBy=endpoint&${range}`)).json as {
      points: Array<{ endpoint: string; samples: number }>;
    };
    assert.equal(byEndpoint.points.length, 8);
    for (const endpoint of ['GET /a', 'GET /b']) {
      assert.equal(
        byEndpoint.points.filter((p) => p.endpoint === endpoint).reduce((t, p) => t + p.samples, 0),
        all.filter((s) => s.endpoint === endpoint).length,
      );
    }
    const bad = await c.get('/v1/timeseries?service=svc&groupBy=flag');
    assert.equal(bad.status, 400);
    assert.match(bad.text, /groupBy/);
  });

  it('/v1/timeseries quantiles: none gives the same means with null quantiles, cost leaves out only the wall ones', async (t) => {
    const { c, batches } = await filled(t);
    const range = `from=${T0}&to=${T0 + 4 * HOUR}`;
    type Point = {
      bucket: number;
      endpoint: string;
      samples: number;
      costMean: number;
      wallMean: number;
      dbMs: number;
      costP50: number | null;
      costP95: number | null;
      wallP50: number | null;
      wallP95: number | null;
    };
    const get = async (query: string) =>
      ((await c.get(`/v1/timeseries?service=svc&groupBy=endpoint&${range}${query}`)).json as { points: Point[] })
        .points;
    for (const bucketMs of [HOUR, 30 * 60_000]) {
      const all = await get(`&bucketMs=${bucketMs}`);
      const none = await get(`&bucketMs=${bucketMs}&quantiles=none`);
      const cost = await get(`&bucketMs=${bucketMs}&quantiles=cost`);
      assert.equal(all.length, 2 * ((4 * HOUR) / bucketMs));
      assert.equal(none.length, all.length);
      assert.equal(cost.length, all.length);
      assert.equal(
        all.reduce((t, p) => t + p.samples, 0),
        sent(batches).length,
      );
      for (const [i, p] of all.entries()) {
        const n = none[i] as Point;
        const q = cost[i] as Point;
        assert.equal(n.bucket, p.bucket);
        assert.equal(n.endpoint, p.endpoint);
        assert.equal(n.samples, p.samples);
        close(n.costMean, p.costMean, 'costMean');
        close(n.wallMean, p.wallMean, 'wallMean');
        close(n.dbMs, p.dbMs, 'dbMs');
        assert.ok(p.costP50 !== null && p.wallP95 !== null, 'quantiles by default');
        assert.deepEqual([n.costP50, n.costP95, n.wallP50, n.wallP95], [null, null, null, null]);
        assert.deepEqual([q.costP50, q.costP95, q.wallP50, q.wallP95], [p.costP50, p.costP95, null, null]);
      }
    }
    const bad = await c.get('/v1/timeseries?service=svc&quantiles=false');
    assert.equal(bad.status, 400);
    assert.match(bad.text, /quantiles/);
  });

  it('/v1/compare by flag variants within one commit', async (t) => {
    const { c } = await filled(t);
    const answer = await c.get('/v1/compare?service=svc&commit=c2&flag=ranker&baseVariant=off&headVariant=on');
    assert.equal(answer.status, 200, answer.text);
    const rows = answer.json as Array<{ endpoint: string; changePct: number; ci: [number, number] }>;
    const a = rows.find((r) => r.endpoint === 'GET /a');
    const b = rows.find((r) => r.endpoint === 'GET /b');
    assert.ok(a && a.ci[0] < 50 && a.ci[1] > 50 && a.ci[0] > 20, `GET /a +50%: ${JSON.stringify(a)}`);
    assert.ok(b && b.ci[0] < 0 && b.ci[1] > 0, `GET /b unchanged: ${JSON.stringify(b)}`);
    // &endpoint=: that endpoint's row alone, the same comparison as in the whole answer.
    const one = await c.get(
      `/v1/compare?service=svc&commit=c2&flag=ranker&baseVariant=off&headVariant=on&endpoint=${encodeURIComponent('GET /a')}`,
    );
    assert.deepEqual(
      (one.json as Array<{ endpoint: string; changePct: number; ci: [number, number] }>).map((r) => [
        r.endpoint,
        r.changePct,
        r.ci,
      ]),
      [[a.endpoint, a.changePct, a.ci]],
    );
    const missing = await c.get('/v1/compare?service=svc&commit=c2&flag=ranker&baseVariant=off');
    assert.equal(missing.status, 400);
    assert.match(missing.text, /headVariant/);
  });

  it('/v1/explain: the rollout test of one endpoint look by look, for the latest commit unless one is named', async (t) => {
    // Enough samples a side for the rollout test's looks (minSamples per endpoint and host class).
    const { c } = await filled(
      t,
      PHASES.map((p) => ({ ...p, perHour: 3000 })),
    );
    const answer = await c.get(`/v1/explain?service=svc&endpoint=${encodeURIComponent('GET /a')}`);
    assert.equal(answer.status, 200, answer.text);
    const e = answer.json as {
      commit: string;
      rolledOutAt: number;
      looks: Array<{ baselineCommit: string; minutesAfterRollout: number; confidence: number; ci: [number, number] }>;
    };
    assert.equal(e.commit, 'c2');
    // No deploy recorded: the rollout is c2's first sample.
    assert.ok(e.rolledOutAt >= T0 + 2 * HOUR && e.rolledOutAt < T0 + 2 * HOUR + 600_000, answer.text);
    assert.ok(e.looks.length >= 1, answer.text);
    for (const look of e.looks) {
      assert.equal(look.baselineCommit, 'c1');
      assert.equal(look.confidence, 0.95);
      assert.ok(look.minutesAfterRollout > 0 && look.minutesAfterRollout <= 120, answer.text);
    }
    const minutes = e.looks.map((l) => l.minutesAfterRollout);
    assert.deepEqual(
      minutes,
      [...minutes].sort((a, b) => a - b),
    );
    // A commit without samples says so; a missing endpoint or an unknown service are errors naming them.
    const none = await c.get(`/v1/explain?service=svc&commit=c9&endpoint=${encodeURIComponent('GET /a')}`);
    assert.equal((none.json as { none: string }).none, 'no sample of commit c9 in the store');
    const noEndpoint = await c.get('/v1/explain?service=svc');
    assert.equal(noEndpoint.status, 400);
    assert.match(noEndpoint.text, /endpoint: required/);
    const noService = await c.get(`/v1/explain?service=nope&endpoint=${encodeURIComponent('GET /a')}`);
    assert.equal(noService.status, 404);
    assert.match(noService.text, /no commit of service nope/);
  });

  it('the dashboard shell: strict CSP, no token needed for the shell, 503 saying how to build when it is missing', async (t) => {
    const c = await startTestCollector(t);
    const page = await fetch(`${c.url}/`);
    const html = await page.text();
    assert.equal(page.status, 200, html);
    assert.equal(page.headers.get('content-security-policy'), DASHBOARD_CSP);
    assert.equal(page.headers.get('x-frame-options'), 'DENY');
    assert.match(html, /<script defer src="\/assets\/app\.js"><\/script>/);
    assert.equal((await fetch(`${c.url}/`, { method: 'POST' })).status, 405);
    // API answers carry names from the network: never sniffed as HTML.
    assert.equal((await c.get('/v1/services')).headers.get('x-content-type-options'), 'nosniff');
    assert.equal((await c.get('/v1/services', { token: null })).headers.get('x-content-type-options'), 'nosniff');
    assert.equal((await fetch(`${c.url}/assets/nothing.js`)).status, 404);

    const empty = await mkdtemp(path.join(tmpdir(), 'ergometer-no-dashboard-'));
    t.after(() => rm(empty, { recursive: true, force: true }));
    const bare = await startTestCollector(t, { dashboardDir: empty });
    const missing = await fetch(`${bare.url}/`);
    assert.equal(missing.status, 503);
    assert.match(await missing.text(), /npm run build/);
  });
});
