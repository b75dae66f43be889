/**
 * Entry point: the login, the header (service, range, views) and the router. Every view reads the
 * read API only; every string from it reaches the page as text (see dom.ts).
 */
import { ApiError, apiGetWith, clearToken, getToken, type ServiceInfo, setToken, setUnauthorizedHandler } from './api';
import type { ViewContext } from './context';
import { h, hashHref, replaceChildren } from './dom';
import type { Metric } from './format';
import { formatHash, parseHash, RANGES, rangeOf, VIEWS, type View, withParams } from './state';
import { renderAlerts } from './views/alerts';
import { renderCompare } from './views/compare';
import { renderEndpoint } from './views/endpoint';
import { renderOverview } from './views/overview';

const RENDERERS: Record<View, (main: HTMLElement, ctx: ViewContext) => Promise<void>> = {
  overview: renderOverview,
  endpoint: renderEndpoint,
  alerts: renderAlerts,
  compare: renderCompare,
};

let generation = 0;
const root = document.getElementById('app') as HTMLElement;

function showLogin(message?: string): void {
  generation++;
  const input = h('input', {
    id: 'token',
    type: 'password',
    name: 'token',
    autocomplete: 'current-password',
    required: true,
    'aria-describedby': 'login-help',
  });
  const error = h('p', { class: 'error', role: 'alert', id: 'login-error' }, message ?? '');
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    { class: 'login', id: 'login', 'aria-label': 'Sign in' },
    h('h1', {}, 'Ergometer'),
    h('label', { for: 'token' }, 'Read token'),
    input,
    h(
      'p',
      { class: 'help', id: 'login-help' },
      'The read token of ergometer serve (ERGOMETER_READ_TOKEN or its token file). It is kept in this tab only.',
    ),
    button,
    error,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token === '') return;
    button.disabled = true;
    error.textContent = '';
    apiGetWith<ServiceInfo[]>(token, '/v1/services', {}, true).then(
      () => {
        setToken(token);
        void render();
      },
      (caught: unknown) => {
        button.disabled = false;
        error.textContent =
          caught instanceof ApiError && caught.status === 401
            ? 'That token is not a read token of this server.'
            : `Could not reach the server: ${(caught as Error).message}`;
        input.focus();
      },
    );
  });
  replaceChildren(root, h('main', { class: 'login-page' }, form));
  input.focus();
}

setUnauthorizedHandler(() => {
  clearToken();
  showLogin('The server refused the token (401). Sign in again.');
});

/** Set while the hash changes for state a view applied itself: that hashchange renders nothing. */
let quietHashChange = false;
/** The window's width when the view was last drawn (charts take their width from it). */
let drawnWidth = window.innerWidth;

function go(view: View, params: URLSearchParams): void {
  const hash = formatHash(view, params);
  if (location.hash === hash) void render();
  else location.hash = hash;
}

function header(
  route: { view: View; params: URLSearchParams },
  services: ServiceInfo[],
  service: string,
  metric: Metric | undefined,
  pinnedHash: string,
): HTMLElement {
  const serviceSelect = h('select', { id: 'service', 'aria-label': 'Service' });
  for (const s of services) {
    const option = h('option', { value: s.service }, s.service);
    option.selected = s.service === service;
    serviceSelect.append(option);
  }
  serviceSelect.addEventListener('change', () => go('overview', new URLSearchParams({ service: serviceSelect.value })));

  const rangeSelect = h('select', { id: 'range', 'aria-label': 'Time range' });
  const pinned = route.params.has('from') && route.params.has('to');
  if (pinned) rangeSelect.append(h('option', { value: '', selected: true }, 'pinned range'));
  for (const r of RANGES) {
    const option = h('option', { value: r.key }, r.label);
    option.selected = !pinned && (route.params.get('range') ?? '24h') === r.key;
    rangeSelect.append(option);
  }
  rangeSelect.addEventListener('change', () => {
    if (rangeSelect.value === '') return;
    go(route.view, withParams(route.params, { range: rangeSelect.value, from: undefined, to: undefined }));
  });

  const info = services.find((s) => s.service === service);
  let metricSelect: HTMLSelectElement | null = null;
  if (info && info.metrics.length > 1) {
    metricSelect = h('select', { id: 'metric', 'aria-label': 'Metric' });
    for (const m of info.metrics) {
      const option = h('option', { value: m }, m === 'cpu_ns' ? 'CPU time' : 'instructions');
      option.selected = m === metric;
      metricSelect.append(option);
    }
    const select = metricSelect;
    select.addEventListener('change', () => go(route.view, withParams(route.params, { metric: select.value })));
  }

  const nav = h('nav', { 'aria-label': 'Views' });
  for (const v of VIEWS) {
    const params: Record<string, string | undefined> = { service };
    for (const key of ['range', 'from', 'to', 'metric']) params[key] = route.params.get(key) ?? undefined;
    if (v.view === 'endpoint' && route.view !== 'endpoint') continue;
    if (v.view === 'endpoint') params.endpoint = route.params.get('endpoint') ?? undefined;
    nav.append(
      h('a', { href: hashHref(v.view, params), 'aria-current': v.view === route.view ? 'page' : undefined }, v.label),
    );
  }
  const logout = h('button', { type: 'button', id: 'logout' }, 'Sign out');
  logout.addEventListener('click', () => {
    clearToken();
    showLogin();
  });
  return h(
    'header',
    { class: 'top' },
    h('a', { class: 'brand', href: hashHref('overview', { service }) }, 'Ergometer'),
    nav,
    h(
      'div',
      { class: 'controls' },
      serviceSelect,
      rangeSelect,
      metricSelect,
      h(
        'a',
        { class: 'share', id: 'share-link', href: pinnedHash, title: 'A link to this view with its time range pinned' },
        'Link',
      ),
      logout,
    ),
  );
}

async function render(): Promise<void> {
  drawnWidth = window.innerWidth;
  const token = getToken();
  if (token === null) {
    showLogin();
    return;
  }
  const mine = ++generation;
  const route = parseHash(location.hash);
  let services: ServiceInfo[];
  try {
    services = await apiGetWith<ServiceInfo[]>(token, '/v1/services');
  } catch (caught) {
    if (caught instanceof ApiError && caught.status === 401) return; // the handler showed the login
    replaceChildren(
      root,
      h('main', { class: 'view' }, h('p', { class: 'error' }, `Could not load services: ${(caught as Error).message}`)),
    );
    return;
  }
  if (mine !== generation) return;
  const service = route.params.get('service') ?? services[0]?.service ?? '';
  const info = services.find((s) => s.service === service);
  const wanted = route.params.get('metric');
  const metric = (info?.metrics.find((m) => m === wanted) ?? info?.metrics[0]) as Metric | undefined;
  const { from, to } = rangeOf(route.params, Date.now());
  const pinnedHash = formatHash(
    route.view,
    withParams(route.params, { service, range: undefined, from: String(from), to: String(to) }),
  );
  const main = h('main', { class: 'view', id: 'view', 'data-view': route.view, 'aria-busy': 'true' });
  replaceChildren(root, header(route, services, service, metric, pinnedHash), main);
  if (services.length === 0) {
    replaceChildren(
      main,
      h(
        'p',
        { class: 'empty' },
        'No service has sent samples yet. Instrument one with @ergometer/agent (docs/agent.md).',
      ),
    );
    main.setAttribute('aria-busy', 'false');
    return;
  }
  const ctx: ViewContext = {
    params: route.params,
    service,
    services,
    metric,
    from,
    to,
    current: () => mine === generation,
    go: (view, changes, keep = true) =>
      go(view, withParams(keep ? route.params : new URLSearchParams({ service }), changes)),
    setParams: (changes) => {
      const params = withParams(route.params, changes);
      for (const key of [...route.params.keys()]) route.params.delete(key);
      for (const [key, value] of params) route.params.append(key, value);
      const share = document.getElementById('share-link');
      share?.setAttribute(
        'href',
        formatHash(route.view, withParams(params, { service, range: undefined, from: String(from), to: String(to) })),
      );
      const hash = formatHash(route.view, params);
      if (location.hash === hash) return;
      quietHashChange = true;
      location.hash = hash;
    },
  };
  try {
    await RENDERERS[route.view](main, ctx);
  } catch (caught) {
    if (!ctx.current()) return;
    if (caught instanceof ApiError && caught.status === 401) return;
    main.append(h('p', { class: 'error', role: 'alert' }, `Could not load this view: ${(caught as Error).message}`));
  }
  if (ctx.current()) {
    main.setAttribute('aria-busy', 'false');
    main.dataset.ready = 'true';
  }
}

window.addEventListener('hashchange', () => {
  if (quietHashChange) {
    quietHashChange = false;
    return;
  }
  void render();
});
// Charts are drawn to the width they have: when the width changes, redraw after the resize settles.
// A change of height alone (a phone's address bar sliding away, a full-page screenshot) leaves the
// view as it is rather than loading it again.
let resizeTimer: ReturnType<typeof setTimeout> | undefined;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    if (window.innerWidth !== drawnWidth) void render();
  }, 250);
});
void render();
