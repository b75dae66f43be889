import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Alert } from '../detect/alert';

/** Where new alerts go. A sink never throws into the detector loop: it reports failure in the result. */
export interface AlertSink {
  readonly name: string;
  send(alerts: Alert[]): Promise<void>;
}

export interface SinkConfig {
  /** Print each alert's summary (and JSON with `json: true`) to this stream. Default: stderr. */
  log?: { json?: boolean } | boolean;
  /** POST `{ "alerts": [...] }` (SPEC §5 objects) to this URL. */
  webhook?: { url: string; headers?: Record<string, string> };
  /** Slack incoming webhook URL. */
  slack?: { url: string };
}

/** Alerts of one rollout (service + candidate commit) travel together: one message, not twenty. */
export function groupByRollout(alerts: Alert[]): Alert[][] {
  const groups = new Map<string, Alert[]>();
  for (const alert of alerts) {
    const key =
      alert.kind === 'rollout'
        ? `${alert.service}\u0000rollout\u0000${alert.candidate.commit}`
        : `${alert.service}\u0000${alert.kind}\u0000${alert.id}`;
    const list = groups.get(key) ?? [];
    list.push(alert);
    groups.set(key, list);
  }
  return [...groups.values()];
}

export class LogSink implements AlertSink {
  readonly name = 'log';
  constructor(
    private readonly out: NodeJS.WritableStream = process.stderr,
    private readonly json = false,
  ) {}

  async send(alerts: Alert[]): Promise<void> {
    for (const group of groupByRollout(alerts)) {
      if (group.length > 1) {
        const first = group[0] as Alert;
        this.out.write(
          `ergometer: commit ${first.candidate.commit} of ${first.service} made ${group.length} endpoints more expensive:\n`,
        );
      }
      for (const alert of group) {
        this.out.write(this.json ? `${JSON.stringify(alert)}\n` : `ergometer alert [${alert.kind}] ${alert.summary}\n`);
      }
    }
  }
}

/** POSTs JSON with a timeout and a few retries (1 s, 2 s, 4 s); gives up loudly, never hangs. */
export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  options: { timeoutMs?: number; retries?: number; retryDelayMs?: number } = {},
): Promise<void> {
  const payload = Buffer.from(JSON.stringify(body));
  const timeoutMs = options.timeoutMs ?? 5000;
  const retries = options.retries ?? 3;
  const retryDelayMs = options.retryDelayMs ?? 1000;
  let lastError: Error | undefined;
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, retryDelayMs * 2 ** (attempt - 1)).unref());
    try {
      await new Promise<void>((resolve, reject) => {
        const target = new URL(url);
        const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
        const req = send(
          target,
          {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'content-length': payload.length, ...headers },
            timeout: timeoutMs,
          },
          (res) => {
            res.resume();
            res.on('end', () => {
              const status = res.statusCode ?? 0;
              if (status >= 200 && status < 300) resolve();
              else reject(new Error(`${target.host} answered ${status}`));
            });
          },
        );
        req.on('timeout', () => req.destroy(new Error(`no answer from ${target.host} within ${timeoutMs} ms`)));
        req.on('error', reject);
        req.end(payload);
      });
      return;
    } catch (error) {
      lastError = error as Error;
    }
  }
  throw lastError ?? new Error('postJson failed');
}

export class WebhookSink implements AlertSink {
  readonly name = 'webhook';
  constructor(
    private readonly url: string,
    private readonly headers: Record<string, string> = {},
    private readonly retryDelayMs = 1000,
  ) {}

  async send(alerts: Alert[]): Promise<void> {
    if (alerts.length === 0) return;
    await postJson(this.url, { alerts, groups: groupByRollout(alerts).map((g) => g.map((a) => a.id)) }, this.headers, {
      retryDelayMs: this.retryDelayMs,
    });
  }
}

/** Slack's mrkdwn needs &, < and > escaped; everything in an alert comes from the network. */
function slackEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export class SlackSink implements AlertSink {
  readonly name = 'slack';
  constructor(
    private readonly url: string,
    private readonly retryDelayMs = 1000,
  ) {}

  async send(alerts: Alert[]): Promise<void> {
    for (const group of groupByRollout(alerts)) {
      const first = group[0] as Alert;
      const title =
        group.length > 1
          ? `:warning: commit \`${slackEscape(first.candidate.commit)}\` of *${slackEscape(first.service)}* made ${group.length} endpoints more expensive`
          : `:warning: ${slackEscape(first.kind)} regression in *${slackEscape(first.service)}*`;
      const lines = group.map((a) => `• ${slackEscape(a.summary)}`);
      await postJson(
        this.url,
        {
          text: `${title}\n${lines.join('\n')}`,
          blocks: [
            { type: 'section', text: { type: 'mrkdwn', text: title } },
            ...lines.map((line) => ({ type: 'section', text: { type: 'mrkdwn', text: line } })),
          ],
        },
        {},
        { retryDelayMs: this.retryDelayMs },
      );
    }
  }
}

/** Builds the sinks a config asks for (the log sink is on unless `log: false`). */
export function createSinks(config: SinkConfig, out: NodeJS.WritableStream = process.stderr): AlertSink[] {
  const sinks: AlertSink[] = [];
  if (config.log !== false) sinks.push(new LogSink(out, typeof config.log === 'object' && config.log.json === true));
  if (config.webhook) sinks.push(new WebhookSink(config.webhook.url, config.webhook.headers));
  if (config.slack) sinks.push(new SlackSink(config.slack.url));
  return sinks;
}

/** Sends to every sink; a failing sink does not stop the others. Returns the failures. */
export async function deliver(sinks: AlertSink[], alerts: Alert[]): Promise<Array<{ sink: string; error: Error }>> {
  const results = await Promise.allSettled(sinks.map((s) => s.send(alerts)));
  const failures: Array<{ sink: string; error: Error }> = [];
  results.forEach((r, i) => {
    if (r.status === 'rejected') failures.push({ sink: sinks[i]?.name ?? '?', error: r.reason as Error });
  });
  return failures;
}
