import type { Alert, AlertKind } from './alert';
import type { EndpointComparison } from './compare';

/** One comparison a detector made; the run decides which become alerts after correction. */
export interface TestedChange {
  kind: AlertKind;
  service: string;
  comparison: EndpointComparison;
  baseline: Alert['baseline'];
  candidate: Alert['candidate'];
  flag: Alert['flag'];
  method: Alert['comparison'];
  /**
   * Share of alpha this comparison may spend (a look of a sequential test: rollout.ts); its p-value
   * is divided by it before the run's correction. Default 1.
   */
  alphaShare?: number;
  /**
   * A rollout look past a canary's end whose before/after estimate disagreed with the canary
   * (rollout.ts, disagreesWithCanary): that before/after estimate; the comparison is the canary's.
   */
  overruled?: Alert['beforeAfterOverruled'];
}
