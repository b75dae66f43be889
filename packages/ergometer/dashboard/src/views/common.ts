import { apiGet, type CommitInfo, type Deploy } from '../api';
import type { Marker } from '../chart';
import type { ViewContext } from '../context';
import { h } from '../dom';

/** Rollouts of a service in range: recorded deploys, and commits first seen (a first sighting is a rollout too). */
export async function rollouts(ctx: ViewContext): Promise<{ commits: CommitInfo[]; markers: Marker[] }> {
  const [commits, deploys] = await Promise.all([
    apiGet<CommitInfo[]>('/v1/commits', { service: ctx.service }),
    apiGet<Deploy[]>('/v1/deploys', { service: ctx.service, from: ctx.from, to: ctx.to }),
  ]);
  const markers = new Map<string, Marker>();
  for (const c of commits) markers.set(c.commit, { ts: c.deployedAt ?? c.firstSeen, label: c.commit });
  for (const d of deploys) {
    const known = markers.get(d.commit);
    if (!known || d.ts < known.ts) markers.set(d.commit, { ts: d.ts, label: d.commit });
  }
  return {
    commits: [...commits].sort((a, b) => a.firstSeen - b.firstSeen),
    markers: [...markers.values()].sort((a, b) => a.ts - b.ts),
  };
}

/** A section with a heading. */
export function section(title: string, id: string, ...children: Array<Node | string | null>): HTMLElement {
  const el = h(
    'section',
    { class: 'panel', id, 'aria-labelledby': `${id}-title` },
    h('h2', { id: `${id}-title` }, title),
  );
  for (const child of children) if (child !== null) el.append(child);
  return el;
}

/** The width a chart can take inside the view. */
export function chartWidth(main: HTMLElement): number {
  return Math.max(480, Math.min(1400, (main.clientWidth || 1200) - 48));
}

/** A select of options; the chosen one selected. */
export function select(
  id: string,
  label: string,
  options: Array<{ value: string; label: string }>,
  chosen: string | undefined,
): HTMLSelectElement {
  const el = h('select', { id, name: id, 'aria-label': label });
  for (const option of options) {
    const o = h('option', { value: option.value }, option.label);
    o.selected = option.value === chosen;
    el.append(o);
  }
  return el;
}
