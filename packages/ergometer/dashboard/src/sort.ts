/**
 * Sortable table columns. The sort is part of the URL state (`sort=column` ascending,
 * `sort=-column` descending), so a sorted table can be shared as a link like any other view. Each
 * sortable header holds a button (the WAI-ARIA sortable-table pattern): it takes the focus with Tab
 * and sorts on click, Enter or Space, and the header says how the table is sorted with `aria-sort`.
 */
import { h } from './dom';

/** A column that can sort its table: its key in the URL, and the value rows are ordered by. */
export interface SortColumn<Row> {
  key: string;
  label: string;
  /** The value to order by; strings are compared as text, null and NaN go last whatever the direction. */
  value: (row: Row) => number | string | null;
  /** Direction of the first click: numbers start with the largest, names with A. */
  firstDirection: 'ascending' | 'descending';
  /** Extra attributes of the header cell (e.g. class 'num'). */
  attrs?: Record<string, string>;
}

export interface SortState {
  key: string;
  direction: 'ascending' | 'descending';
}

/** The sort named by a `sort` URL parameter when it names one of these columns, else `fallback`. */
export function parseSort<Row>(
  value: string | null,
  columns: ReadonlyArray<SortColumn<Row>>,
  fallback: SortState,
): SortState {
  if (value === null || value === '') return fallback;
  const descending = value.startsWith('-');
  const key = descending ? value.slice(1) : value;
  if (!columns.some((c) => c.key === key)) return fallback;
  return { key, direction: descending ? 'descending' : 'ascending' };
}

/** The URL form of a sort: `key` ascending, `-key` descending. */
export function formatSort(state: SortState): string {
  return `${state.direction === 'descending' ? '-' : ''}${state.key}`;
}

/** The rows in the order of `state` (a copy; equal values keep their order). */
export function sortRows<Row>(rows: readonly Row[], columns: ReadonlyArray<SortColumn<Row>>, state: SortState): Row[] {
  const column = columns.find((c) => c.key === state.key);
  if (!column) return [...rows];
  const sign = state.direction === 'ascending' ? 1 : -1;
  const missing = (v: number | string | null): boolean => v === null || (typeof v === 'number' && Number.isNaN(v));
  return rows
    .map((row, index) => ({ row, index, value: column.value(row) }))
    .sort((a, b) => {
      const aMissing = missing(a.value);
      const bMissing = missing(b.value);
      if (aMissing || bMissing) return aMissing === bMissing ? a.index - b.index : aMissing ? 1 : -1;
      const order =
        typeof a.value === 'number' && typeof b.value === 'number'
          ? a.value - b.value
          : String(a.value).localeCompare(String(b.value));
      return order !== 0 ? sign * order : a.index - b.index;
    })
    .map((entry) => entry.row);
}

/**
 * The header cell of a sortable column: `aria-sort` on the sorted one, a button that asks for the
 * next sort (the other direction when this column is sorted, else its first direction).
 */
export function sortableHeader<Row>(
  column: SortColumn<Row>,
  state: SortState,
  onSort: (next: SortState) => void,
): HTMLTableCellElement {
  const sorted = state.key === column.key;
  const next: SortState = {
    key: column.key,
    direction: sorted ? (state.direction === 'ascending' ? 'descending' : 'ascending') : column.firstDirection,
  };
  const button = h(
    'button',
    {
      type: 'button',
      class: 'sort',
      'data-sort': column.key,
      title: `Sort by ${column.label}, ${next.direction}`,
    },
    column.label,
    h(
      'span',
      { class: 'sort-mark', 'aria-hidden': 'true' },
      sorted ? (state.direction === 'ascending' ? '▲' : '▼') : '',
    ),
  );
  button.addEventListener('click', () => onSort(next));
  return h('th', { scope: 'col', 'aria-sort': sorted ? state.direction : undefined, ...column.attrs }, button);
}

/**
 * A sortable table that rebuilds itself in place when one of its headers asks for another sort:
 * `build` makes the table for a sort (handing `onSort` to its {@link sortableHeader} cells),
 * `remember` records the new sort (in the URL). The header just used keeps the focus.
 */
export function rebuildOnSort(
  initial: SortState,
  build: (sort: SortState, onSort: (next: SortState) => void) => HTMLTableElement,
  remember: (sort: SortState) => void,
): HTMLTableElement {
  const make = (sort: SortState): HTMLTableElement => {
    const table = build(sort, (next) => {
      remember(next);
      const replacement = make(next);
      table.replaceWith(replacement);
      replacement.querySelector<HTMLButtonElement>(`button[data-sort="${next.key}"]`)?.focus();
    });
    return table;
  };
  return make(initial);
}

/** The element of a sortable table: its caption and its header row; `data-sort` says how it is sorted. */
export function sortableTableShell(
  id: string,
  caption: string,
  sort: SortState,
  headers: HTMLTableCellElement[],
): HTMLTableElement {
  return h(
    'table',
    { class: 'data', id, 'data-sort': formatSort(sort) },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, ...headers)),
  );
}
