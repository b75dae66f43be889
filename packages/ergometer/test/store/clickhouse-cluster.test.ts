import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createClient } from '@clickhouse/client';
import { openClickHouseStore } from '../../src/index';
import { type ClickHouseCluster, startClickHouseCluster } from '../support/clickhouse';
import { clickHouseSuite, makeBatch, openFreshDatabase, type Target } from './clickhouse-suite';
import { runStoreConformance } from './conformance';

let cluster: ClickHouseCluster | undefined;
before(async () => {
  cluster = await startClickHouseCluster(2, 'ergometer');
});
after(async () => {
  await cluster?.stop();
});

function target(): Target {
  if (!cluster) throw new Error('ClickHouse cluster not started');
  const shardUrls = cluster.shards.map((s) => s.url);
  const name = cluster.name;
  // Collectors enter through the first shard; DDL and retention go to each shard.
  return {
    nodeUrls: shardUrls,
    options: (database) => ({ url: shardUrls[0] as string, database, cluster: { name, shardUrls } }),
  };
}

clickHouseSuite('ClickHouse store, two shards through Distributed tables', target, (target) => {
  test('batches spread over both shards, each batch whole on one shard; either shard answers the same', async () => {
    const database = `t_${process.pid}_spread`;
    const { nodeUrls: shardUrls } = target();
    const entries = shardUrls.map((url) => openClickHouseStore({ ...target().options(database), url }));
    try {
      for (const store of entries) await store.init();
      const batches = Array.from({ length: 20 }, (_, i) => makeBatch(700 + i, { n: 10 }));
      await (entries[0] as (typeof entries)[number]).ingestMany(batches);
      const perShard: Array<Map<string, number>> = [];
      for (const url of shardUrls) {
        const client = createClient({ url });
        const result = await client.query({
          query: `SELECT batch_id, count() AS n FROM ${database}.samples_local GROUP BY batch_id`,
          format: 'JSONEachRow',
        });
        const rows = await result.json<{ batch_id: string; n: string }>();
        perShard.push(new Map(rows.map((r) => [r.batch_id, Number(r.n)])));
        await client.close();
      }
      assert.ok(
        perShard.every((m) => m.size > 0),
        'both shards hold batches',
      );
      for (const b of batches) {
        const holders = perShard.filter((m) => m.has(b.batchId));
        assert.equal(holders.length, 1, `${b.batchId} on exactly one shard`);
        assert.equal(holders[0]?.get(b.batchId), 10);
      }
      const [a, b] = entries as [(typeof entries)[number], (typeof entries)[number]];
      assert.equal(await a.sampleCount(), 200);
      assert.equal(await b.sampleCount(), 200);
      assert.deepEqual(await b.endpoints({ service: 'api' }), await a.endpoints({ service: 'api' }));
    } finally {
      await Promise.all(entries.map((s) => s.close()));
    }
  });
});

runStoreConformance('clickhouse (two shards, Distributed)', openFreshDatabase(target, 'conf'));
