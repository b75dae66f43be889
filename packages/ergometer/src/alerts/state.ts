import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Alert } from '../detect/alert';

/** An alert as remembered between detector runs. */
export interface AlertRecord {
  alert: Alert;
  status: 'open' | 'resolved';
  firstSeen: number;
  lastSeen: number;
  resolvedAt: number | null;
}

/**
 * Remembers alerts between detector runs so that one regression is one alert (not one per run):
 * a run's alerts are merged by their stable id; only ids never seen before are "new" and go to the
 * sinks; an open alert that a run no longer finds because a later commit of the service brought the
 * endpoint back is resolved. Kept as a JSON file beside the database, replaced atomically.
 */
export class AlertBook {
  private readonly records = new Map<string, AlertRecord>();

  constructor(private readonly file: string | undefined) {
    if (!file) return;
    try {
      const saved = JSON.parse(readFileSync(file, 'utf8')) as { alerts?: AlertRecord[] };
      for (const record of saved.alerts ?? []) this.records.set(record.alert.id, record);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw Object.assign(new Error(`cannot read alert state ${file}: ${(error as Error).message}`), {
          code: 'ERGOMETER_BAD_ALERT_STATE',
        });
      }
    }
  }

  /**
   * Merges one run's alerts and returns those the sinks must hear about: never seen before and
   * open, or resolved before and open again. An alert the run marks `resolvedBy` is resolved; an open alert the run did not find at
   * all any more (out of the lookback, or its evidence fell below significance) is resolved too.
   *
   * A rollout alert that a newer commit resolved stays resolved. Each run re-tests the resolution against
   * the newest commit, over hours far from the alert's baseline window: a later release on a busier
   * hour read as the old regression "back" (the demo under load: v2's alert, resolved by v3, reopened
   * and announced again at v4). A regression a later commit brings back is that commit's own rollout
   * alert, tested against the commit it replaced. Flag alerts can reopen: their id leaves the commit out,
   * and the same variant dear again on a later commit is news.
   */
  merge(alerts: Alert[], now: number): Alert[] {
    const fresh: Alert[] = [];
    const seen = new Set<string>();
    for (const alert of alerts) {
      seen.add(alert.id);
      const record = this.records.get(alert.id);
      const resolved = alert.resolvedBy !== undefined;
      if (record) {
        // Still resolved: the commit that resolved it first keeps the credit. Each run compares the
        // newest commit, so a later release would otherwise take it (the demo's v2 regression, fixed by
        // v3, read "resolved by v4").
        const resolver = record.status === 'resolved' ? record.alert.resolvedBy : undefined;
        if (resolved && resolver !== undefined) alert.resolvedBy = resolver;
        record.alert = alert;
        record.lastSeen = now;
        if (resolved && record.status === 'open') {
          record.status = 'resolved';
          record.resolvedAt = now;
        } else if (!resolved && record.status === 'resolved' && alert.kind === 'rollout' && resolver !== undefined) {
          alert.resolvedBy = resolver;
        } else if (!resolved && record.status === 'resolved') {
          // Back after a fix (e.g. the same flag variant dear again on a later commit): tell the sinks again.
          record.status = 'open';
          record.resolvedAt = null;
          fresh.push(alert);
        }
      } else {
        this.records.set(alert.id, {
          alert,
          status: resolved ? 'resolved' : 'open',
          firstSeen: now,
          lastSeen: now,
          resolvedAt: resolved ? now : null,
        });
        if (!resolved) fresh.push(alert);
      }
    }
    for (const record of this.records.values()) {
      if (record.status === 'open' && !seen.has(record.alert.id)) {
        record.status = 'resolved';
        record.resolvedAt = now;
      }
    }
    this.save();
    return fresh;
  }

  list(filter: { service?: string; status?: 'open' | 'resolved' } = {}): AlertRecord[] {
    return [...this.records.values()]
      .filter(
        (r) =>
          (filter.service === undefined || r.alert.service === filter.service) &&
          (filter.status === undefined || r.status === filter.status),
      )
      .sort((a, b) => b.firstSeen - a.firstSeen);
  }

  private save(): void {
    if (!this.file) return;
    mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ v: 1, alerts: [...this.records.values()] }));
    renameSync(tmp, this.file);
  }
}
