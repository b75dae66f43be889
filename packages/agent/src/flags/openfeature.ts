/**
 * An OpenFeature server-SDK hook that records every flag evaluated during a sampled request. Typed
 * structurally, so that the agent does not depend on `@openfeature/server-sdk`: the object satisfies the
 * SDK's `Hook` interface (1.x) and is passed to `OpenFeature.addHooks()` or a client's `addHooks()`.
 */

/** The parts of the SDK's HookContext the hook reads. */
export interface FlagHookContext {
  readonly flagKey: string;
  readonly defaultValue: unknown;
}

/** The parts of the SDK's EvaluationDetails the hook reads. */
export interface FlagEvaluationDetails {
  readonly flagKey: string;
  readonly value: unknown;
  readonly variant?: string | undefined;
}

/** What {@link Agent.openFeatureHook} returns: a hook for `OpenFeature.addHooks()`. */
export interface OpenFeatureHook {
  readonly name: string;
  /** A successful evaluation: records the variant, else the value as a string. */
  after(hookContext: FlagHookContext, details: FlagEvaluationDetails): void;
  /** A failed evaluation: the app got the default value, so that is what the request ran with. */
  error(hookContext: FlagHookContext, error: unknown): void;
}

/** Longest variant kept; a JSON object flag can be large. */
const MAX_VARIANT_LENGTH = 200;

/** A flag value as a variant string: strings as they are, objects as JSON, truncated. */
export function variantOf(value: unknown): string {
  let text: string;
  if (typeof value === 'string') text = value;
  else if (typeof value === 'object' && value !== null) {
    try {
      text = JSON.stringify(value);
    } catch {
      text = String(value);
    }
  } else text = String(value);
  return text.length > MAX_VARIANT_LENGTH ? text.slice(0, MAX_VARIANT_LENGTH) : text;
}

/** The hook; `record` is the agent's flag(key, variant), a no-op outside a sampled request. */
export function createOpenFeatureHook(record: (key: string, variant: string) => void): OpenFeatureHook {
  return {
    name: 'ergometer',
    after(hookContext, details) {
      const variant = details.variant;
      record(
        details.flagKey ?? hookContext.flagKey,
        variant !== undefined && variant !== '' ? variant : variantOf(details.value),
      );
    },
    error(hookContext) {
      record(hookContext.flagKey, variantOf(hookContext.defaultValue));
    },
  };
}
