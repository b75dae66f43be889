/**
 * Labels that follow a request through async_hooks, for a sampler that reads "the labels of the running code" from
 * one global place (the async-hooks context path: Node 20, and Node 22 by default, where AsyncLocalStorage is not
 * backed by AsyncContextFrame). The labels ride on an AsyncLocalStorage; an async_hooks `before` hook hands the
 * labels of each callback about to run to `publish`, which puts them where the sampler reads them (V8's profiler:
 * its sample context; the interrupt sampler: its label slot). The hook and the storage are on only while the
 * profiler records.
 */
import { AsyncLocalStorage, createHook } from 'node:async_hooks';
import type { ProfileLabels } from './labels';

export class HookLabels {
  private readonly storage = new AsyncLocalStorage<ProfileLabels>();
  private readonly hook: ReturnType<typeof createHook>;
  private hookOn = false;
  private published: ProfileLabels | undefined = undefined;

  /** `publish(labels)`: the labels of the code about to run (undefined outside labelled requests). */
  constructor(private readonly publish: (labels: ProfileLabels | undefined) => void) {
    this.hook = createHook({ before: () => this.set(this.storage.getStore()) });
  }

  /** Runs `fn` with `labels` as the labels of everything it does, synchronously and after its awaits. */
  run<T>(labels: ProfileLabels, fn: () => T): T {
    return this.storage.run(labels, () => {
      const outer = this.published;
      this.set(labels);
      try {
        return fn();
      } finally {
        // The rest of the callback that called us (e.g. the HTTP parser) is not this request's.
        this.set(outer);
      }
    });
  }

  current(): ProfileLabels | undefined {
    return this.storage.getStore();
  }

  /** A window starts: no labels yet, and the hook on. */
  enable(): void {
    this.published = undefined;
    this.publish(undefined);
    this.hook.enable();
    this.hookOn = true;
  }

  /**
   * Between windows: the `before` hook off, and the storage too. An AsyncLocalStorage that has run once keeps
   * Node's async_hooks `init` hook on for every later promise and callback of the process (all storages share it),
   * and so keeps the agent's own request storage from turning it off when nothing is sampled: between windows the
   * profiler cost about as much as while recording (a run before this fix: +20% CPU per request at the defaults
   * against +27% recording all the time). run() turns it on again for the next window's first request. A request
   * that spans the end of a window keeps no labels into the next one; its later samples there are unlabelled.
   */
  quiet(): void {
    this.hook.disable();
    this.hookOn = false;
    this.storage.disable();
  }

  get on(): boolean {
    return this.hookOn || (this.storage as { enabled?: boolean }).enabled === true;
  }

  private set(labels: ProfileLabels | undefined): void {
    if (this.published === labels) return;
    this.published = labels;
    this.publish(labels);
  }
}
