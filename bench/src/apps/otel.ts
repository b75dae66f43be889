import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

/**
 * The competitor a user would pick instead of Ergometer: the OpenTelemetry Node
 * tracing SDK as its getting-started guide sets it up — http and express
 * instrumentation, every request traced (the default AlwaysOn sampler), a
 * BatchSpanProcessor with its default limits — exporting to an exporter that
 * drops the spans. So the figure is OpenTelemetry's in-process cost (span
 * creation, context propagation, attribute collection, batching), not the
 * cost of serializing and sending spans, which would only add to it.
 */

type ExportCallback = Parameters<SpanExporter['export']>[1];

class NoopSpanExporter implements SpanExporter {
  export(_spans: unknown[], resultCallback: ExportCallback): void {
    // 0 is ExportResultCode.SUCCESS (@opentelemetry/core, not a dependency of its own here).
    resultCallback({ code: 0 });
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * Starts tracing. Must run before `express` and `node:http` are first required:
 * the instrumentations patch modules as they are loaded (require-in-the-middle).
 * Returns a function that flushes and stops the SDK.
 */
export function startOpenTelemetry(): () => Promise<void> {
  const provider = new NodeTracerProvider({ spanProcessors: [new BatchSpanProcessor(new NoopSpanExporter())] });
  provider.register();
  registerInstrumentations({ instrumentations: [new HttpInstrumentation(), new ExpressInstrumentation()] });
  return () => provider.shutdown();
}
