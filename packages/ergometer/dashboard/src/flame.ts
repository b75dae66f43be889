/**
 * A diff flame graph on canvas (icicle: root on top). A frame's width is the larger of its base and
 * head cost per request (or of its children's widths), so a function that shrank to nothing stays visible; its colour is the
 * change: red for grown, blue for shrunk, grey for unchanged (the colour scale saturates at ±25%
 * of the frame's own base). Search dims every frame that does not match. Keyboard: arrows move
 * between frames, Enter zooms into the selected one, Escape zooms out. Names are drawn with
 * fillText (pixels), and shown in the details line with textContent.
 */
import type { FlameNode } from './api';
import { h } from './dom';
import { formatCost, formatPct, type Metric } from './format';

interface Frame {
  node: FlameNode;
  parent: Frame | null;
  children: Frame[];
  depth: number;
  /** Width in cost units: max(base, head). */
  size: number;
  /** Offset from the parent's start, cost units. */
  offset: number;
}

const ROW_PX = 18;

function build(node: FlameNode, parent: Frame | null, depth: number, offset: number): Frame {
  const frame: Frame = { node, parent, children: [], depth, size: 0, offset };
  let at = 0;
  // Children in code-unit order of their names (the same layout in every browser and locale).
  for (const child of [...node.children].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const built = build(child, frame, depth + 1, at);
    frame.children.push(built);
    at += built.size;
  }
  // At least as wide as its children: one child may have grown while another shrank, so the
  // children's larger sides can add up to more than the parent's larger side.
  frame.size = Math.max(node.base, node.head, at);
  return frame;
}

function maxDepth(frame: Frame): number {
  return frame.children.reduce((m, c) => Math.max(m, maxDepth(c)), frame.depth);
}

/** The colour of a change: red grown, blue shrunk; stronger the larger the relative change. */
export function diffColor(base: number, head: number): string {
  if (base === 0 && head === 0) return 'rgb(220,220,220)';
  const rel = base === 0 ? 1 : (head - base) / base;
  const t = Math.min(1, Math.abs(rel) / 0.25);
  if (Math.abs(rel) < 0.005) return 'rgb(214,214,214)';
  const fade = (full: number) => Math.round(230 + (full - 230) * t);
  return rel > 0 ? `rgb(${fade(214)},${fade(60)},${fade(50)})` : `rgb(${fade(45)},${fade(110)},${fade(214)})`;
}

export class FlameGraph {
  readonly element: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly details: HTMLElement;
  private readonly matchLine: HTMLElement;
  private readonly root: Frame;
  private zoom: Frame;
  private selected: Frame;
  private search = '';
  private readonly rects: Array<{ frame: Frame; x: number; y: number; w: number }> = [];
  private readonly width: number;

  constructor(
    flame: FlameNode,
    private readonly metric: Metric,
    width: number,
  ) {
    this.root = build(flame, null, 0, 0);
    this.zoom = this.root;
    this.selected = this.root;
    this.width = width;
    const height = (maxDepth(this.root) + 1) * ROW_PX;
    this.canvas = h('canvas', {
      class: 'flame',
      id: 'flame-canvas',
      tabindex: 0,
      role: 'img',
      'aria-label': 'Diff flame graph; arrows move between frames, Enter zooms, Escape zooms out',
    });
    const ratio = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * ratio);
    this.canvas.height = Math.round(height * ratio);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    const searchInput = h('input', {
      type: 'search',
      id: 'flame-search',
      placeholder: 'search functions',
      'aria-label': 'Search functions',
    });
    searchInput.addEventListener('input', () => {
      this.search = searchInput.value.trim().toLowerCase();
      this.draw();
    });
    const reset = h('button', { type: 'button', id: 'flame-reset' }, 'Reset zoom');
    reset.addEventListener('click', () => {
      this.zoom = this.root;
      this.draw();
    });
    this.details = h('p', { class: 'flame-details', id: 'flame-details', 'aria-live': 'polite' });
    this.matchLine = h('span', { class: 'muted', id: 'flame-matches' });
    this.element = h(
      'div',
      { class: 'flame-wrap' },
      h('div', { class: 'form-row' }, searchInput, reset, this.matchLine),
      h(
        'p',
        { class: 'legend' },
        h('span', { class: 'swatch grown' }),
        ' grown ',
        h('span', { class: 'swatch shrunk' }),
        ' shrunk ',
        h('span', { class: 'swatch same' }),
        ' unchanged; width: the larger of base and head',
      ),
      this.canvas,
      this.details,
    );
    this.canvas.addEventListener('mousemove', (event) => {
      const frame = this.frameAt(event.offsetX, event.offsetY);
      if (frame) this.describe(frame);
    });
    this.canvas.addEventListener('click', (event) => {
      const frame = this.frameAt(event.offsetX, event.offsetY);
      if (!frame) return;
      this.selected = frame;
      this.zoom = frame;
      this.draw();
    });
    this.canvas.addEventListener('keydown', (event) => this.onKey(event));
    this.draw();
  }

  private onKey(event: KeyboardEvent): void {
    const s = this.selected;
    let next: Frame | null = null;
    if (event.key === 'ArrowDown') next = s.children[0] ?? null;
    else if (event.key === 'ArrowUp') next = s.parent;
    else if (event.key === 'ArrowRight' || event.key === 'ArrowLeft') {
      const siblings = s.parent?.children ?? [];
      const i = siblings.indexOf(s) + (event.key === 'ArrowRight' ? 1 : -1);
      next = siblings[i] ?? null;
    } else if (event.key === 'Enter') {
      this.zoom = s;
      this.draw();
      event.preventDefault();
      return;
    } else if (event.key === 'Escape') {
      this.zoom = this.zoom.parent ?? this.root;
      this.draw();
      event.preventDefault();
      return;
    } else return;
    event.preventDefault();
    if (next) {
      this.selected = next;
      this.draw();
    }
  }

  private frameAt(x: number, y: number): Frame | undefined {
    return this.rects.find((r) => x >= r.x && x < r.x + r.w && y >= r.y && y < r.y + ROW_PX)?.frame;
  }

  private describe(frame: Frame): void {
    const n = frame.node;
    const change = n.base === 0 ? (n.head === 0 ? 0 : Number.POSITIVE_INFINITY) : ((n.head - n.base) / n.base) * 100;
    const where = n.file ? ` ${n.file}:${n.line}` : '';
    this.details.textContent = `${n.name}${where} — base ${formatCost(n.base, this.metric)}, head ${formatCost(n.head, this.metric)} per request (${Number.isFinite(change) ? formatPct(change) : 'new'})`;
  }

  private matches(frame: Frame): boolean {
    return this.search !== '' && `${frame.node.name} ${frame.node.file}`.toLowerCase().includes(this.search);
  }

  /** Start of a frame in cost units from the root's start. */
  private start(frame: Frame): number {
    let at = 0;
    for (let f: Frame | null = frame; f; f = f.parent) at += f.offset;
    return at;
  }

  draw(): void {
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    const ratio = window.devicePixelRatio || 1;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, this.width, this.canvas.height);
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    this.rects.length = 0;
    const zoomStart = this.start(this.zoom);
    const scale = this.width / (this.zoom.size || 1);
    let matchedHead = 0;
    let matchedFrames = 0;
    const visit = (frame: Frame, inZoom: boolean) => {
      // Ancestors of the zoomed frame span the whole width; the rest is placed relative to it.
      let x: number;
      let w: number;
      if (!inZoom) {
        x = 0;
        w = this.width;
      } else {
        x = (this.start(frame) - zoomStart) * scale;
        w = frame.size * scale;
      }
      if (inZoom && (x + w < 0 || x > this.width)) return;
      const matched = this.matches(frame);
      if (matched) {
        matchedFrames++;
        // Count a frame's head cost once: not again for matching frames below a matching one.
        let outer = false;
        for (let p = frame.parent; p; p = p.parent) if (this.matches(p)) outer = true;
        if (!outer) matchedHead += frame.node.head;
      }
      if (w >= 0.5) {
        const y = frame.depth * ROW_PX;
        ctx.globalAlpha = this.search === '' || matched ? 1 : 0.3;
        ctx.fillStyle = diffColor(frame.node.base, frame.node.head);
        ctx.fillRect(x, y, Math.max(w - 1, 0.5), ROW_PX - 1);
        if (matched || frame === this.selected) {
          ctx.strokeStyle = frame === this.selected ? '#111' : '#7a4fb5';
          ctx.lineWidth = 2;
          ctx.strokeRect(x + 1, y + 1, Math.max(w - 3, 1), ROW_PX - 3);
        }
        if (w > 30) {
          ctx.fillStyle = '#111';
          const label = frame.node.name;
          const max = Math.floor((w - 6) / 6.2);
          ctx.fillText(label.length > max ? `${label.slice(0, Math.max(max - 1, 1))}…` : label, x + 3, y + ROW_PX / 2);
        }
        ctx.globalAlpha = 1;
        this.rects.push({ frame, x, y, w });
      }
      const childrenInZoom = inZoom || frame === this.zoom;
      for (const child of frame.children) {
        if (!childrenInZoom && !isAncestorOrSelf(child, this.zoom)) continue;
        visit(child, childrenInZoom);
      }
    };
    visit(this.root, this.zoom === this.root);
    this.describe(this.selected);
    this.matchLine.textContent =
      this.search === ''
        ? ''
        : `${matchedFrames} frame${matchedFrames === 1 ? '' : 's'} match, ${formatCost(matchedHead, this.metric)} of ${formatCost(this.root.node.head, this.metric)} per request in head`;
  }
}

function isAncestorOrSelf(frame: Frame, of: Frame): boolean {
  for (let f: Frame | null = of; f; f = f.parent) if (f === frame) return true;
  return false;
}
