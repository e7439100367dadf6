/**
 * The in-process {@link ResourcePool}: shared objects (etcd clients, mirrors)
 * reference-counted per configuration generation, so that a reload can build
 * the new configuration, taking references, before the old one lets go of
 * its own; objects both use survive the switch.
 *
 * @module
 */

import type { ResourcePool } from "./plugin.ts";

/** Something a pool can close (the bound of {@link ResourcePool.acquire}'s objects). */
export type Closeable = { close(): Promise<void> | void };

/** A configuration generation's hold on the pool's objects. */
export interface ResourceScope {
  /** Drops this scope's references and closes objects no live scope references. */
  release(): Promise<void>;
}

/** One pooled object. */
interface Entry {
  value: Closeable;
  /** Live scopes referencing it. */
  holders: Set<ScopeState>;
  /** Creation order: objects are closed newest first (a mirror before its client). */
  seq: number;
}

/** Bookkeeping behind a {@link ResourceScope}. */
interface ScopeState {
  keys: Set<string>;
  released: boolean;
}

/** Reports an object that failed to close. */
export type CloseErrorHandler = (key: string, err: unknown) => void;

/** Reference-counted shared objects; see the module doc. */
export class Resources implements ResourcePool {
  #entries = new Map<string, Entry>();
  /** Live scopes, oldest first; `acquire` records into the newest. */
  #scopes: ScopeState[] = [];
  #seq = 0;
  #onCloseError: CloseErrorHandler;

  /** Creates an empty pool; `onCloseError` hears about objects whose close() failed. */
  constructor(onCloseError: CloseErrorHandler = () => {}) {
    this.#onCloseError = onCloseError;
  }

  /** Number of live objects. */
  get size(): number {
    return this.#entries.size;
  }

  /** True when an object is live under `key`. */
  has(key: string): boolean {
    return this.#entries.has(key);
  }

  /** Opens a new scope; `acquire` records into it until a newer one opens or it is released. */
  scope(): ResourceScope {
    const state: ScopeState = { keys: new Set(), released: false };
    this.#scopes.push(state);
    return { release: () => this.#release(state) };
  }

  /** Returns the live object for `key` (creating it on first use) and records it in the current scope. */
  acquire<T extends Closeable>(key: string, create: () => T): T {
    const scope = this.#scopes[this.#scopes.length - 1];
    if (!scope) throw new Error(`resources: acquire('${key}') outside a scope`);
    let entry = this.#entries.get(key);
    if (!entry) {
      entry = { value: create(), holders: new Set(), seq: this.#seq++ };
      this.#entries.set(key, entry);
    }
    entry.holders.add(scope);
    scope.keys.add(key);
    return entry.value as T;
  }

  /** Releases every scope and closes every object (shutdown). */
  async closeAll(): Promise<void> {
    for (const scope of [...this.#scopes].reverse()) await this.#release(scope);
  }

  async #release(scope: ScopeState): Promise<void> {
    if (scope.released) return;
    scope.released = true;
    this.#scopes = this.#scopes.filter((s) => s !== scope);
    const orphans: [string, Entry][] = [];
    for (const key of scope.keys) {
      const entry = this.#entries.get(key);
      if (!entry) continue;
      entry.holders.delete(scope);
      if (entry.holders.size === 0) {
        // Unlisted before closing: a concurrent acquire gets a fresh object.
        this.#entries.delete(key);
        orphans.push([key, entry]);
      }
    }
    orphans.sort((a, b) => b[1].seq - a[1].seq);
    for (const [key, entry] of orphans) {
      try {
        await entry.value.close();
      } catch (err) {
        this.#onCloseError(key, err);
      }
    }
  }
}
