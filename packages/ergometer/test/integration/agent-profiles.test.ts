import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { INGEST_TOKEN, startTestCollector } from '../server/harness';
import { startProfiledApp } from './profiled-app';

interface StoredProfileRow {
  id: string;
  service: string;
  commit: string;
  host: string;
  metric: string;
  from: number;
  to: number;
  bytes: number;
}

/**
 * The agent's profiler → HTTP exporter → a real collector over DuckDB: profiles arrive at
 * `POST /v1/profiles` with service, commit, host, metric and window, are listed by `GET /v1/profiles`
 * and download as the pprof the agent made, with its labels.
 */
describe('agent profiler → collector', () => {
  it('ships each profile to POST /v1/profiles; GET /v1/profiles lists it and serves the pprof', async (t) => {
    const collector = await startTestCollector(t);
    const options = {
      service: 'shop',
      commit: 'c9',
      host: 'web-9',
      collector: collector.url,
      token: INGEST_TOKEN,
      exitFlushTimeoutMs: 0,
      profile: { enabled: true, dutyCycle: 1, periodMs: 1000, intervalMicros: 2000 },
    };
    const app = await startProfiledApp(t, options);
    const startedMs = Date.now();
    for (let i = 0; Date.now() - startedMs < 2500; i++) {
      await Promise.all([app.get(`/heavy/${i}`), app.get(`/light/${i}`), app.get(`/light/${i + 1}`)]);
    }
    const report = await app.shutdown();
    assert.ok((report.profilesSent ?? 0) >= 2, `${report.profilesSent} profiles sent; ${app.stderr}`);

    const listed = await collector.get('/v1/profiles?service=shop');
    assert.equal(listed.status, 200, listed.text);
    const rows = listed.json as StoredProfileRow[];
    assert.equal(rows.length, report.profilesSent);
    for (const row of rows) {
      assert.deepEqual(
        { service: row.service, commit: row.commit, host: row.host, metric: row.metric },
        { service: 'shop', commit: 'c9', host: 'web-9', metric: 'cpu_ns' },
      );
      assert.ok(row.from < row.to && row.bytes > 0);
    }

    // Download each one: gzipped pprof that decodes, with the heavy function labelled by its endpoint.
    let heavySamples = 0;
    for (const row of rows) {
      const response = await fetch(`${collector.url}/v1/profiles/${encodeURIComponent(row.id)}`, {
        headers: { authorization: 'Bearer test-read-token' },
      });
      assert.equal(response.status, 200);
      const body = Buffer.from(await response.arrayBuffer());
      assert.equal(body.length, row.bytes);
      assert.deepEqual([body[0], body[1]], [0x1f, 0x8b], 'gzip, as the agent sent it');
      const profile = Profile.decode(gunzipSync(body));
      const str = (i: number | bigint) => profile.stringTable.strings[Number(i)] ?? '';
      assert.deepEqual(
        profile.sampleType.map((v) => [str(v.type), str(v.unit)]),
        [
          ['samples', 'count'],
          ['cpu', 'nanoseconds'],
        ],
      );
      const sieve = profile.function.find((f) => str(f.name) === 'heavyPrimeSieve');
      if (sieve === undefined) continue;
      const sieveLocations = new Set(
        profile.location.filter((l) => l.line.some((line) => line.functionId === sieve.id)).map((l) => String(l.id)),
      );
      for (const sample of profile.sample) {
        if (!sample.locationId.some((id) => sieveLocations.has(String(id)))) continue;
        heavySamples++;
        const endpoint = sample.label.find((l) => str(l.key) === 'endpoint');
        if (endpoint !== undefined) assert.equal(str(endpoint.str), 'GET /heavy/:id');
      }
    }
    assert.ok(heavySamples > 0, 'heavyPrimeSieve was sampled');
  });
});
