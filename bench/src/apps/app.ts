import express, { type Express, type RequestHandler } from 'express';
import { CATALOG_SIZE } from './workload';

/**
 * The "realistic" Express 5 app of the throughput benchmark: three routes that
 * do what a typical JSON API does per request — parse a JSON body, a couple of
 * `await`s on an in-memory "database" (one resolved promise, one setImmediate
 * hop standing in for I/O), some array and Map work, and serialize a response
 * of a few KB. Tuned so that one request of the mix costs on the order of
 * 100 µs of CPU on the benchmark machine (throughput.ts prints the measured
 * figure), the range where a per-request overhead of a few µs is visible.
 */

interface Product {
  id: number;
  sku: string;
  name: string;
  description: string;
  priceCents: number;
  currency: 'EUR';
  tags: string[];
  stock: number;
  rating: number;
  reviews: number;
  attributes: { color: string; material: string; weightGrams: number; dimensionsCm: [number, number, number] };
  createdAt: string;
}

interface OrderLine {
  productId: number;
  quantity: number;
  giftWrap?: boolean;
  note?: string;
}

interface OrderRequest {
  customer: { id: string; email: string; tier: string };
  shipping: { country: string; postcode: string; express: boolean };
  coupon?: string;
  lines: OrderLine[];
}

const COLORS = ['red', 'blue', 'green', 'black', 'white', 'steel', 'sand', 'olive'];
const MATERIALS = ['steel', 'oak', 'cotton', 'wool', 'glass', 'leather'];
const WORDS = ['compact', 'durable', 'classic', 'modern', 'light', 'heavy-duty', 'portable', 'premium', 'eco', 'smart'];

/** A deterministic catalog: the same products, and so the same work per request, in every run. */
function buildCatalog(): Product[] {
  return Array.from({ length: CATALOG_SIZE }, (_, index) => {
    const id = index + 1;
    const color = COLORS[id % COLORS.length]!;
    const material = MATERIALS[(id * 7) % MATERIALS.length]!;
    const word = (k: number) => WORDS[(id * k) % WORDS.length]!;
    return {
      id,
      sku: `SKU-${String(id).padStart(6, '0')}`,
      name: `${word(3)} ${color} ${material} item ${id}`,
      description: `A ${word(5)}, ${word(7)} ${material} product in ${color}. ${word(11)} design, ships in 2 days.`,
      priceCents: 499 + ((id * 7919) % 20_000),
      currency: 'EUR',
      tags: [color, material, word(3), word(13), id % 2 === 0 ? 'even' : 'odd'],
      stock: (id * 31) % 120,
      rating: 1 + ((id * 17) % 40) / 10,
      reviews: (id * 13) % 900,
      attributes: { color, material, weightGrams: 100 + ((id * 97) % 5000), dimensionsCm: [id % 50, id % 30, id % 20] },
      createdAt: new Date(Date.UTC(2024, id % 12, 1 + (id % 28))).toISOString(),
    };
  });
}

/** The stand-in for a database: answers from memory, after an await or an event-loop hop like a driver would. */
class InMemoryDb {
  private readonly products = new Map<number, Product>();
  private readonly byTag = new Map<string, Product[]>();
  private nextOrderId = 1;

  constructor(catalog: Product[]) {
    for (const product of catalog) {
      this.products.set(product.id, product);
      for (const tag of product.tags) {
        const list = this.byTag.get(tag);
        if (list) list.push(product);
        else this.byTag.set(tag, [product]);
      }
    }
  }

  /** A cache hit: resolves on the microtask queue. */
  getProduct(id: number): Promise<Product | undefined> {
    return Promise.resolve(this.products.get(id));
  }

  /** A query: answers on the next turn of the event loop, as a driver's socket read would. */
  findByTag(tag: string): Promise<Product[]> {
    return new Promise((resolve) => setImmediate(() => resolve(this.byTag.get(tag) ?? [])));
  }

  /** An insert: one event-loop hop, returns the new id. */
  insertOrder(): Promise<number> {
    return new Promise((resolve) => setImmediate(() => resolve(this.nextOrderId++)));
  }
}

function summary(product: Product) {
  return {
    id: product.id,
    sku: product.sku,
    name: product.name,
    priceCents: product.priceCents,
    rating: product.rating,
  };
}

function parsePositiveInt(value: unknown, fallback: number, max: number): number {
  const n = typeof value === 'string' ? Number.parseInt(value, 10) : Number.NaN;
  return Number.isInteger(n) && n > 0 ? Math.min(n, max) : fallback;
}

/**
 * Builds the app. `instrument`, when given, is mounted before everything else
 * (that is where `agent.express()` goes).
 */
export function createBenchApp(instrument?: RequestHandler): Express {
  const db = new InMemoryDb(buildCatalog());
  const app = express();
  app.disable('x-powered-by');
  if (instrument) app.use(instrument);
  app.use(express.json({ limit: '64kb' }));

  app.get('/products/:id', async (req, res) => {
    const id = parsePositiveInt(req.params.id, 0, CATALOG_SIZE);
    const product = await db.getProduct(id);
    if (!product) {
      res.status(404).json({ error: 'not found' });
      return;
    }
    // "Customers also bought": products sharing a tag, ranked by tag overlap then rating.
    const candidates = await db.findByTag(product.tags[1]!);
    const ownTags = new Set(product.tags);
    const related = candidates
      .filter((other) => other.id !== product.id)
      .map((other) => ({ other, overlap: other.tags.filter((tag) => ownTags.has(tag)).length }))
      .sort((a, b) => b.overlap - a.overlap || b.other.rating - a.other.rating)
      .slice(0, 8)
      .map(({ other }) => summary(other));
    res.json({
      product,
      related,
      priceWithVatCents: Math.round(product.priceCents * 1.19),
      availability: product.stock > 10 ? 'in-stock' : product.stock > 0 ? 'low-stock' : 'sold-out',
    });
  });

  app.get('/search', async (req, res) => {
    const q = typeof req.query.q === 'string' ? req.query.q.toLowerCase() : '';
    const limit = parsePositiveInt(req.query.limit, 20, 100);
    const byTag = await db.findByTag(q);
    const hits = byTag.length > 0 ? byTag : [];
    const facets = new Map<string, number>();
    for (const product of hits) {
      for (const tag of product.tags) facets.set(tag, (facets.get(tag) ?? 0) + 1);
    }
    const results = hits
      .filter((product) => product.stock > 0)
      .sort((a, b) => b.rating * Math.log1p(b.reviews) - a.rating * Math.log1p(a.reviews))
      .slice(0, limit)
      .map(summary);
    res.json({
      query: q,
      total: hits.length,
      results,
      facets: [...facets.entries()].sort((a, b) => b[1] - a[1]).slice(0, 10),
    });
  });

  app.post('/orders', async (req, res) => {
    const order = req.body as OrderRequest;
    if (!order || !Array.isArray(order.lines) || order.lines.length === 0) {
      res.status(400).json({ error: 'an order needs lines' });
      return;
    }
    const products = await Promise.all(order.lines.map((line) => db.getProduct(line.productId)));
    const lines = order.lines.map((line, i) => {
      const product = products[i];
      if (!product) return { productId: line.productId, error: 'unknown product' };
      const quantity = Math.max(1, Math.min(line.quantity, product.stock || 1));
      return {
        ...summary(product),
        quantity,
        lineTotalCents: quantity * product.priceCents,
        giftWrap: !!line.giftWrap,
      };
    });
    const subtotalCents = lines.reduce((sum, line) => sum + ('lineTotalCents' in line ? line.lineTotalCents : 0), 0);
    const discountCents = order.coupon === 'SPRING10' ? Math.round(subtotalCents * 0.1) : 0;
    const shippingCents = order.shipping.express ? 1490 : subtotalCents > 5000 ? 0 : 490;
    const orderId = await db.insertOrder();
    res.status(201).json({
      orderId,
      customer: order.customer.id,
      lines,
      subtotalCents,
      discountCents,
      shippingCents,
      totalCents: subtotalCents - discountCents + shippingCents,
    });
  });

  return app;
}
