/**
 * The one list of plugins and their order: the composition root's half of
 * the program (main.ts is the other), as CoreDNS's plugin.cfg and the
 * core/plugin/zplugin.go generated from it. main.ts passes this list to
 * the Corefile loader (which directives exist) and to the Instance (which
 * setups run, in what order); lib/server knows no plugin by itself. It is
 * a module of its own so that tests can use the list without main.ts.
 *
 * As in plugin.cfg, the order here, not the Corefile's, decides who sees a
 * query first: the first plugin listed is the outermost link of every
 * chain. Directives that register no handler (bind, health, ready, reload)
 * still run their setup in this order.
 *
 * @module
 */

import type { PluginDefinition } from "./lib/server/plugin.ts";

// The plugin API, so that the list's type and what a plugin sees are documented with it.
export type * from "./lib/server/plugin.ts";
export type { Directive, ServerBlock, Token } from "./lib/corefile/types.ts";
export type * from "./lib/dns/types.ts";
export type { Header, Message } from "./lib/dns/wire.ts";
export type { Logger } from "./lib/log.ts";
import { reloadPlugin } from "./lib/plugins/reload/mod.ts";
import { bufsizePlugin } from "./lib/plugins/bufsize/mod.ts";
import { bindPlugin } from "./lib/plugins/bind/mod.ts";
import { debugPlugin } from "./lib/plugins/debug/mod.ts";
import { readyPlugin } from "./lib/plugins/ready/mod.ts";
import { healthPlugin } from "./lib/plugins/health/mod.ts";
import { prometheusPlugin } from "./lib/plugins/prometheus/mod.ts";
import { errorsPlugin } from "./lib/plugins/errors/mod.ts";
import { logPlugin } from "./lib/plugins/log/mod.ts";
import { loadbalancePlugin } from "./lib/plugins/loadbalance/mod.ts";
import { cachePlugin } from "./lib/plugins/cache/mod.ts";
import { idetcdPlugin } from "./lib/plugins/idetcd/mod.ts";
import { etcdPlugin } from "./lib/plugins/etcd/mod.ts";
import { forwardPlugin } from "./lib/plugins/forward/mod.ts";
import { whoamiPlugin } from "./lib/plugins/whoami/mod.ts";

/** Every plugin, in chain order (CoreDNS's plugin.cfg order for those we have). */
export const PLUGINS: readonly PluginDefinition[] = Object.freeze([
  reloadPlugin,
  bufsizePlugin,
  bindPlugin,
  debugPlugin,
  readyPlugin,
  healthPlugin,
  prometheusPlugin,
  errorsPlugin,
  logPlugin,
  loadbalancePlugin,
  cachePlugin,
  idetcdPlugin,
  etcdPlugin,
  forwardPlugin,
  whoamiPlugin,
]);

const NAMES: ReadonlySet<string> = new Set(PLUGINS.map((p) => p.name));

/** Whether `name` is a directive idetcd knows (plus `import`, handled by the parser). */
export function isDirective(name: string): boolean {
  return NAMES.has(name);
}
