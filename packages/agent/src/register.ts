/**
 * Zero-code instrumentation: `node --import @ergometer/agent/register server.js`
 * (or `--require`). Starts the agent from ERGOMETER_* environment variables and
 * measures every `node:http`/`node:https` server in the process, whatever
 * framework sits on top. Route templates come from the framework when it is
 * Express (req.route); otherwise from the path with identifiers replaced by
 * `:id`. Add a framework adapter too for exact routes: the two layers agree and
 * never measure a request twice.
 *
 * A bad configuration never stops the app: it is reported on stderr, once, and
 * the app runs uninstrumented.
 */
import http from 'node:http';
import https from 'node:https';
import { type Agent, getAgent, start } from './agent';

function instrumentServers(agent: Agent): void {
  for (const Server of [http.Server, https.Server]) {
    const proto = Server.prototype as { emit: (event: string | symbol, ...args: unknown[]) => boolean };
    const originalEmit = proto.emit;
    proto.emit = function emitWithErgometer(this: unknown, event: string | symbol, ...args: unknown[]): boolean {
      if (event !== 'request') return originalEmit.call(this, event, ...args);
      if (!agent.wantsRequest(args[0] as http.IncomingMessage)) {
        agent.countUnsampled(args[0] as http.IncomingMessage, args[1] as http.ServerResponse);
        return originalEmit.call(this, event, ...args);
      }
      const [req, res] = args as [http.IncomingMessage, http.ServerResponse];
      return agent.runRequest(req, res, () => originalEmit.call(this, event, ...args));
    };
  }
}

function register(): void {
  if (getAgent() !== undefined) return;
  let agent: Agent;
  try {
    agent = start();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`ergometer: not instrumenting this process: ${message}\n`);
    return;
  }
  // The agent itself writes what is queued on beforeExit and SIGTERM (exitFlushTimeoutMs).
  instrumentServers(agent);
}

register();
