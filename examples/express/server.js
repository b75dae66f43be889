// Express 4 or 5 with @ergometer/agent: one start() call, one middleware before the routes.
// Run: ERGOMETER_COLLECTOR=http://127.0.0.1:7070 ERGOMETER_TOKEN=<ingest token> node examples/express/server.js
// (or ERGOMETER_COLLECTOR=file:./samples.ndjson to see what the agent sends). PORT picks the port (default 3000).
const { start } = require('@ergometer/agent');
const express = require('express');

const agent = start({
  service: 'example-express',
  sampleRate: Number(process.env.ERGOMETER_SAMPLE_RATE ?? 0.01), // 1% of requests in production
});

const app = express();
app.use(agent.express()); // before the routes: endpoints are named by route template, GET /hello/:name

app.get('/hello/:name', (req, res) => {
  res.json({ greeting: `hello ${req.params.name}`, words: fibonacciWords(25) });
});

// Some CPU work, so that the cost per request is worth measuring.
function fibonacciWords(n) {
  const words = ['a', 'b'];
  for (let i = 2; i < n; i++) words.push((words[i - 1] + words[i - 2]).slice(-64));
  return words.length;
}

const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});

// On SIGTERM: stop accepting, then let the agent send what it has queued.
process.on('SIGTERM', () => {
  server.close();
  agent.shutdown().finally(() => process.exit(0));
});
