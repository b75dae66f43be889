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
export { isExporterRequest, kExporterRequest } from './export/http-exporter';
export type { UsersSketch } from './export/users-sketch';
export {
  addUserHash,
  createUsersSketch,
  decodeUsersSketch,
  encodeUsersSketch,
  estimateDistinctUsers,
  mergeUsersSketches,
  USERS_SKETCH_LOG2_REGISTERS,
  USERS_SKETCH_VERSION,
} from './export/users-sketch';
export type { Exporter, ProfileUpload, WireBatch, WireCount, WireSample, WireUsers } from './export/wire';
export type { FlagEvaluationDetails, FlagHookContext, OpenFeatureHook } from './flags/openfeature';
export type { AgentOptions, ProfileOptions } from './options';
export type { ContextPath as ProfileContextPath, ProfileSchedule } from './profile/profiler';
export { AGENT_VERSION } from './version';
