/**
 * The only way the dashboard builds DOM: elements from a tag, attributes set one by one (never
 * from markup), and children that are nodes or strings turned into text nodes. Nothing from the
 * network ever reaches innerHTML, outerHTML, insertAdjacentHTML or document.write, so an endpoint
 * named `<img src=x onerror=alert(1)>` shows as exactly that text.
 */

export type Child = Node | string | number | null | undefined | false;

/** Attributes that may carry a URL: set only to in-page hash links (see {@link hashHref}). */
const URL_ATTRIBUTES = new Set(['href', 'src', 'action', 'formaction', 'xlink:href']);

/**
 * Creates an element. `attrs` values are strings (set with setAttribute, so never parsed as markup);
 * `on*` attributes are refused (listeners are added with addEventListener), and URL attributes
 * must be in-page links starting with `#`.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    const lower = name.toLowerCase();
    if (lower.startsWith('on')) throw new Error(`h(): event handler attribute ${name} refused; use addEventListener`);
    const text = value === true ? '' : String(value);
    if (URL_ATTRIBUTES.has(lower) && !text.startsWith('#')) {
      throw new Error(`h(): ${name} must be an in-page link (#…), got ${JSON.stringify(text.slice(0, 40))}`);
    }
    element.setAttribute(name, text);
  }
  append(element, ...children);
  return element;
}

/** Appends children; strings and numbers become text nodes. */
export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(
      typeof child === 'string' || typeof child === 'number' ? document.createTextNode(String(child)) : child,
    );
  }
}

/** Replaces every child of `parent`. */
export function replaceChildren(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, ...children);
}

/** A link to a view of this page: `#/view?query`, the query built by URLSearchParams (so it is encoded). */
export function hashHref(view: string, params: Record<string, string | undefined>): string {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== '') query.set(key, value);
  const text = query.toString();
  return `#/${view}${text ? `?${text}` : ''}`;
}

/** A number shown as text, with the exact value kept in data-value (for tests and copy-paste). */
export function numberCell(
  text: string,
  value: number | null,
  attrs: Record<string, string> = {},
): HTMLTableCellElement {
  return h(
    'td',
    { class: 'num', 'data-value': value === null || !Number.isFinite(value) ? '' : String(value), ...attrs },
    text,
  );
}
