/** Alerts after detection: remembering them (one regression, one alert) and sending them. */

export type { DetectorSchedulerOptions } from './scheduler';
export { DetectorScheduler } from './scheduler';
export type { AlertSink, SinkConfig } from './sinks';
export { createSinks, deliver, groupByRollout, LogSink, postJson, SlackSink, WebhookSink } from './sinks';
export type { AlertRecord } from './state';
export { AlertBook } from './state';
