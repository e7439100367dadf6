/**
 * cache: a front-end cache of replies with TTL countdown, negative
 * caching, prefetch and serve-stale, as CoreDNS's cache plugin (see README.md).
 *
 * @module
 */

import type { Plugin, PluginDefinition } from "../../server/plugin.ts";
import { Cache } from "./cache.ts";
import { parseCache } from "./setup.ts";

export { Cache, type CacheOptions } from "./cache.ts";
export { parseCache } from "./setup.ts";

/**
 * The cache directive with the clock `now` (ms since the epoch; tests move
 * it by hand): `cache [TTL] [ZONES...] { success; denial; prefetch;
 * serve_stale; servfail; disable; keepttl }`.
 */
export function cacheDefinition(now: () => number = Date.now): PluginDefinition {
  return {
    name: "cache",
    // Its hits depend only on the question and its stores; they tell the fast
    // path how to send them again (Reply.reuse), TTLs counted down in place.
    perQuery: "pure-answer",
    setup(ctx) {
      const cache = new Cache(parseCache(ctx.directives, ctx.zones), now);
      // Waiting for running refreshes could hold shutdown for a backend's whole timeout.
      ctx.onShutdown(() => cache.stop());
      const plugin: Plugin = {
        name: "cache",
        serve: (req, next) => cache.serve(req, next),
      };
      return plugin;
    },
  };
}

/** The cache directive on the system clock. */
export const cachePlugin: PluginDefinition = cacheDefinition();
