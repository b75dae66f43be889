import type { ServiceInfo } from './api';
import type { Metric } from './format';
import type { View } from './state';

/** What every view is given to render. */
export interface ViewContext {
  params: URLSearchParams;
  service: string;
  services: ServiceInfo[];
  metric: Metric | undefined;
  from: number;
  to: number;
  /** Whether this render is still the current one (a newer navigation makes it stale). */
  current(): boolean;
  /** Navigates to a view with these parameter changes (undefined removes a key). */
  go(view: View, changes: Record<string, string | undefined>, keep?: boolean): void;
  /**
   * Records parameter changes in the URL (and in `params`) without rendering the view again: for
   * state the view has already applied in place, such as a table's sort.
   */
  setParams(changes: Record<string, string | undefined>): void;
}
