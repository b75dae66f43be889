// Fastify 4 or 5 with @ergometer/agent: one start() call, one plugin.
// Run: ERGOMETER_COLLECTOR=http://127.0.0.1:7070 ERGOMETER_TOKEN=<ingest token> node examples/fastify/server.js
// (or ERGOMETER_COLLECTOR=file:./samples.ndjson to see what the agent sends). PORT picks the port (default 3000).
const { start } = require('@ergometer/agent');
const Fastify = require('fastify');

const agent = start({
  service: 'example-fastify',
  sampleRate: Number(process.env.ERGOMETER_SAMPLE_RATE ?? 0.01), // 1% of requests in production
});

async function main() {
  const app = Fastify();
  await app.register(agent.fastify); // applies to every route: endpoints are named GET /hello/:name

  app.get('/hello/:name', async (request) => ({ greeting: `hello ${request.params.name}`, words: fibonacciWords(25) }));

  const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' });
  console.log(`listening on ${address}`);

  // On SIGTERM: stop accepting, then let the agent send what it has queued.
  process.on('SIGTERM', () => {
    app
      .close()
      .then(() => agent.shutdown())
      .finally(() => process.exit(0));
  });
}

// Some CPU work, so that the cost per request is worth measuring.
function fibonacciWords(n) {
  const words = ['a', 'b'];
  for (let i = 2; i < n; i++) words.push((words[i - 1] + words[i - 2]).slice(-64));
  return words.length;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
