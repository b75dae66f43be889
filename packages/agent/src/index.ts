/**
 * @ergometer/agent — the public door. Everything a user imports is listed here by name.
 */
export type { Agent, RouteResolver } from './agent';
export { getAgent, start } from './agent';
export type { BackendOption, BackendSource } from './backend/sources';
export { BACKEND_SOURCES } from './backend/sources';
export type { BackendKind } from './backend/times';
export { CHANNEL_NAMES } from './diagnostics';
export type { ErgometerErrorCode } from './errors';
export { ErgometerError } from './errors';
export type { Exporter, WireBatch, WireCount, WireSample, WireUsers } from './export/wire';
export type { AgentOptions } from './options';
export { AGENT_VERSION } from './version';
