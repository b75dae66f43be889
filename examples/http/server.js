// Plain node:http with @ergometer/agent: wrap the handler, name the route of each request.
// Run: ERGOMETER_COLLECTOR=http://127.0.0.1:7070 ERGOMETER_TOKEN=<ingest token> node examples/http/server.js
// (or ERGOMETER_COLLECTOR=file:./samples.ndjson to see what the agent sends). PORT picks the port (default 3000).
// Without touching the code at all: node --import @ergometer/agent/register server.js (docs/agent.md).
const http = require('node:http');
const { start } = require('@ergometer/agent');

const agent = start({
  service: 'example-http',
  sampleRate: Number(process.env.ERGOMETER_SAMPLE_RATE ?? 0.01), // 1% of requests in production
});

const server = http.createServer(
  agent.http((req, res) => {
    const match = /^\/hello\/([^/]+)$/.exec(req.url ?? '');
    if (req.method === 'GET' && match) {
      // Without a router the agent cannot know the template: name it, or every URL is its own endpoint.
      agent.setRoute('/hello/:name');
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ greeting: `hello ${decodeURIComponent(match[1])}`, words: fibonacciWords(25) }));
      return;
    }
    res.statusCode = 404;
    res.end('not found');
  }),
);

// Some CPU work, so that the cost per request is worth measuring.
function fibonacciWords(n) {
  const words = ['a', 'b'];
  for (let i = 2; i < n; i++) words.push((words[i - 1] + words[i - 2]).slice(-64));
  return words.length;
}

server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});

// On SIGTERM: stop accepting, then let the agent send what it has queued.
process.on('SIGTERM', () => {
  server.close();
  agent.shutdown().finally(() => process.exit(0));
});
