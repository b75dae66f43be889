import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { deliver, LogSink, SlackSink, WebhookSink } from '../../src/alerts/sinks';
import { AlertBook } from '../../src/alerts/state';
import { type Alert, alertId } from '../../src/detect/alert';
import { alertFixture } from '../support/alerts';

function makeAlert(endpoint: string, commit = 'def456', extra: Partial<Alert> = {}): Alert {
  return {
    ...alertFixture({ endpoint, candidate: { commit }, ...extra }),
    id: alertId(['rollout', 'api', endpoint, commit]),
  };
}

interface Received {
  headers: IncomingMessage['headers'];
  body: unknown;
}

describe('alert sinks against a local HTTP receiver', () => {
  let server: Server;
  let url: string;
  const received: Received[] = [];
  let failNext = 0;

  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (failNext > 0) {
          failNext--;
          res.writeHead(500).end('try again');
          return;
        }
        received.push({ headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('webhook: POSTs the SPEC alert objects with the configured headers, grouped by rollout', async () => {
    received.length = 0;
    const alerts = [makeAlert('GET /feed/:id'), makeAlert('GET /profile/:id'), makeAlert('GET /x', 'zzz999')];
    await new WebhookSink(url, { 'x-team': 'perf' }).send(alerts);
    assert.equal(received.length, 1);
    const got = received[0] as Received;
    assert.equal(got.headers['x-team'], 'perf');
    assert.equal(got.headers['content-type'], 'application/json');
    const body = got.body as { alerts: Alert[]; groups: string[][] };
    assert.deepEqual(
      body.alerts.map((a) => a.endpoint),
      ['GET /feed/:id', 'GET /profile/:id', 'GET /x'],
    );
    assert.equal(body.alerts[0]?.changePct, 3.1);
    assert.deepEqual(body.alerts[0]?.ci, [2.2, 4.0]);
    assert.deepEqual(
      body.groups.map((g) => g.length),
      [2, 1],
    );
  });

  it('webhook: retries a failing receiver and succeeds', async () => {
    received.length = 0;
    failNext = 2;
    await new WebhookSink(url, {}, 10).send([makeAlert('GET /a')]);
    assert.equal(received.length, 1);
  });

  it('slack: one message per rollout, untrusted text escaped for mrkdwn', async () => {
    received.length = 0;
    await new SlackSink(url, 10).send([makeAlert('GET /<script>&'), makeAlert('GET /b')]);
    assert.equal(received.length, 1);
    const { text } = (received[0] as Received).body as { text: string };
    assert.match(text, /made 2 endpoints more expensive/);
    assert.match(text, /GET \/&lt;script&gt;&amp;/);
    assert.doesNotMatch(text, /<script>/);
  });

  it('a dead sink does not stop the others, and its failure is reported', async () => {
    received.length = 0;
    const out = new PassThrough();
    let logged = '';
    out.on('data', (c: Buffer) => {
      logged += c.toString();
    });
    const failures = await deliver(
      [new WebhookSink('http://127.0.0.1:9/nothing-listens', {}, 1), new LogSink(out), new WebhookSink(url, {}, 1)],
      [makeAlert('GET /c')],
    );
    assert.equal(failures.length, 1);
    assert.equal(failures[0]?.sink, 'webhook');
    assert.equal(received.length, 1);
    assert.match(
      logged,
      /ergometer alert \[rollout\] api GET \/c: \+3\.10% CPU per request \(95% CI \+2\.20% to \+4\.00%/,
    );
    assert.match(logged, /since commit def456 replaced abc123/);
    assert.match(logged, /renderFeed \(src\/feed\.js:42\)/);
    assert.match(logged, /Next: ergometer compare --service api --base abc123 --head def456/);
  });
});

describe('alert book: one regression, one alert', () => {
  it('only new alerts go out; a resolved alert is remembered as resolved (a fixed rollout for good); state survives a restart', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ergometer-alerts-'));
    try {
      const file = path.join(dir, 'alerts.json');
      const book = new AlertBook(file);
      const a = makeAlert('GET /feed/:id');
      const b = makeAlert('GET /profile/:id');
      assert.deepEqual(
        book.merge([a, b], 1000).map((x) => x.id),
        [a.id, b.id],
      );
      assert.deepEqual(book.merge([a, b], 2000), [], 'the same regressions found again are not new');
      book.merge([a, { ...b, resolvedBy: 'fix789' }], 3000);
      const reopened = new AlertBook(file);
      assert.deepEqual(
        reopened.list({ status: 'open' }).map((r) => r.alert.id),
        [a.id],
      );
      const resolved = reopened.list({ status: 'resolved' });
      assert.equal(resolved[0]?.alert.resolvedBy, 'fix789');
      assert.equal(resolved[0]?.resolvedAt, 3000);
      // Still resolved after a later release: the fix keeps the credit, not the newest commit.
      reopened.merge([a, { ...b, resolvedBy: 'later999' }], 3500);
      assert.equal(reopened.list({ status: 'resolved' })[0]?.alert.resolvedBy, 'fix789');
      assert.equal(reopened.list({ status: 'resolved' })[0]?.resolvedAt, 3000);
      assert.ok(statSync(file).size > 0);
      // A later run that no longer finds it resolved (the newest commit compared on a busier hour) does not
      // reopen a rollout the fix resolved: a regression brought back is the later commit's own rollout alert.
      assert.deepEqual(reopened.merge([a, b], 4000), []);
      const stillResolved = reopened.list({ status: 'resolved' });
      assert.deepEqual(
        stillResolved.map((r) => [r.alert.id, r.alert.resolvedBy, r.resolvedAt]),
        [[b.id, 'fix789', 3000]],
      );
      // A flag alert (its id leaves the commit out): the same variant dear again on a later commit is news.
      const flag = { ...makeAlert('GET /search'), kind: 'flag' as const, id: alertId(['flag', 'api', 'GET /search']) };
      assert.deepEqual(
        reopened.merge([a, flag], 5000).map((x) => x.id),
        [flag.id],
      );
      reopened.merge([a, { ...flag, resolvedBy: 'fix790' }], 6000);
      assert.deepEqual(
        reopened.merge([a, flag], 7000).map((x) => x.id),
        [flag.id],
      );
      assert.deepEqual(reopened.merge([a, flag], 8000), []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
