import { type Alert, alertId, describeAlert } from '../../src/detect/alert';

/**
 * A complete rollout alert for tests, with its summary written the way the detectors write it: a 3.1%
 * feed regression of service `api`, commit abc123 → def456, unless `fields` says otherwise.
 */
export function alertFixture(fields: Partial<Omit<Alert, 'id' | 'summary'>> = {}): Alert {
  const body: Omit<Alert, 'id' | 'summary'> = {
    kind: 'rollout',
    service: 'api',
    endpoint: 'GET /feed',
    metric: 'cpu_ns',
    baseline: { commit: 'abc123' },
    candidate: { commit: 'def456' },
    flag: null,
    changePct: 3.1,
    ci: [2.2, 4.0],
    confidence: 0.95,
    pValue: 1e-9,
    pValueRaw: 1e-11,
    n: { baseline: 10000, candidate: 9000 },
    threshold: 1,
    thresholdSource: 'default',
    comparison: 'canary',
    costMean: { baseline: 100000, candidate: 103100 },
    hostClasses: ['Xeon x2'],
    rootCause: [{ function: 'renderFeed', file: 'src/feed.js', line: 42, deltaPct: 2.5 }],
    detectedAt: 1,
    ...fields,
  };
  const id = alertId([body.kind, body.service, body.endpoint, body.baseline.commit, body.candidate.commit]);
  return { id, ...body, summary: describeAlert(body) };
}
