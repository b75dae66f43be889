/**
 * The competitor a user would pick instead: the OpenTelemetry Node SDK with
 * http and express instrumentation and a batch span processor, exporting to a
 * no-op exporter (so we measure the instrumentation, not a network). Must be
 * required before express and http are loaded.
 */

import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

const noopExporter: SpanExporter = {
  export(_spans: ReadableSpan[], resultCallback) {
    resultCallback({ code: 0 });
  },
  shutdown: async () => {},
};

const provider = new NodeTracerProvider({ spanProcessors: [new BatchSpanProcessor(noopExporter)] });
provider.register();
registerInstrumentations({ instrumentations: [new HttpInstrumentation(), new ExpressInstrumentation()] });
