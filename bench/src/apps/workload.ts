/**
 * The request mix of the throughput benchmark, shared by the app (which must
 * answer every one with a 2xx) and the load generator (which cycles through
 * them on every connection, in order).
 */

/** One request of the mix, in the shape autocannon's `requests` option takes. */
export interface WorkloadRequest {
  method: 'GET' | 'POST';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

/** Products in the in-memory catalog; ids run from 1 to this. */
export const CATALOG_SIZE = 500;

/** Line items in each benchmark order: with the product fields echoed back, a body of ~1 KB. */
const ORDER_LINES = 8;

function orderBody(seed: number): string {
  const lines = Array.from({ length: ORDER_LINES }, (_, i) => ({
    productId: ((seed * 37 + i * 53) % CATALOG_SIZE) + 1,
    quantity: 1 + ((seed + i) % 4),
    giftWrap: i % 3 === 0,
    note: `line ${i} of order ${seed}`,
  }));
  return JSON.stringify({
    customer: { id: `c-${seed}`, email: `customer${seed}@example.com`, tier: seed % 2 === 0 ? 'gold' : 'basic' },
    shipping: { country: 'DE', postcode: `1${seed}0${seed}`, express: seed % 2 === 1 },
    coupon: seed % 3 === 0 ? 'SPRING10' : undefined,
    lines,
  });
}

/**
 * Two product pages, a search and an order, twice with different parameters: the three routes
 * in the proportions 2:1:1, so no single handler dominates the cost.
 */
export const WORKLOAD: readonly WorkloadRequest[] = [
  { method: 'GET', path: '/products/17' },
  { method: 'GET', path: '/search?q=steel&limit=20' },
  { method: 'GET', path: '/products/342' },
  { method: 'POST', path: '/orders', headers: { 'content-type': 'application/json' }, body: orderBody(1) },
  { method: 'GET', path: '/products/255' },
  { method: 'GET', path: '/search?q=blue&limit=20' },
  { method: 'GET', path: '/products/8' },
  { method: 'POST', path: '/orders', headers: { 'content-type': 'application/json' }, body: orderBody(2) },
];
