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

/** The cache directive: `cache [TTL] [ZONES...] { success; denial; prefetch; serve_stale; servfail; disable; keepttl }`. */
export const cachePlugin: PluginDefinition = {
  name: "cache",
  setup(ctx) {
    const cache = new Cache(parseCache(ctx.directives, ctx.zones));
    // Waiting for running refreshes could hold shutdown for a backend's whole timeout.
    ctx.onShutdown(() => cache.stop());
    const plugin: Plugin = {
      name: "cache",
      serve: (req, next) => cache.serve(req, next),
    };
    return plugin;
  },
};
