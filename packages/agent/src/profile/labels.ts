/**
 * What a profile sample taken during a request is labelled with. One object per labelled request while
 * the profiler runs (profile.labelFraction of them); the profiler holds a reference to it from each stack
 * sample and reads it only when it serializes the profile, so an endpoint resolved when the response
 * ends, or a flag recorded after the sample was taken, still labels that sample.
 *
 * This file is loaded with the agent; it must not import the profiler (which loads a native addon).
 */
export class ProfileLabels {
  /** `METHOD route-template`, set when the request ends (the agent's endpoint of the request). */
  endpoint: string | undefined = undefined;
  /** Flags recorded for the request, key → variant; at most MAX_FLAGS_PER_REQUEST. */
  flags: Map<string, string> | undefined = undefined;
  /**
   * How to name the route of a request still running when the profile is taken; dropped when the
   * request ends so that a finished request's framework objects are not kept until the next profile.
   */
  private routeResolver: ((source: unknown) => string | undefined) | undefined = undefined;
  private routeSource: unknown = undefined;

  constructor(
    /** HTTP method, upper case. */
    readonly method: string,
    /** The request labelled, until it ends: an inner layer of instrumentation finds these labels by it. */
    private request: object | undefined = undefined,
  ) {}

  /**
   * Whether these are the labels of `request`, still running. A request handled inside another one's context
   * (an in-process sub-request, e.g. Fastify's inject()) finds the outer request's labels there: not its own.
   */
  isFor(request: object): boolean {
    return this.request === request;
  }

  /** The innermost adapter's resolver wins, as for the request context. */
  setRouteResolver<S>(resolver: (source: S) => string | undefined, source: S): void {
    this.routeResolver = resolver as (source: unknown) => string | undefined;
    this.routeSource = source;
  }

  /** The request ended: its endpoint is final, its framework objects are let go. */
  finish(endpoint: string): void {
    this.endpoint = endpoint;
    this.request = undefined;
    this.routeResolver = undefined;
    this.routeSource = undefined;
  }

  /** The endpoint, or for a request still running, the route its framework knows by now (if any). */
  resolve(name: (method: string, route: string | undefined) => string): string | undefined {
    if (this.endpoint !== undefined || this.routeResolver === undefined) return this.endpoint;
    try {
      const route = this.routeResolver(this.routeSource);
      return route === undefined ? undefined : name(this.method, route);
    } catch {
      return undefined;
    }
  }
}
