/**
 * The one list of plugins and their order.
 *
 * As in CoreDNS's plugin.cfg, the order here, not the Corefile's, decides
 * who sees a query first: the first plugin listed is the outermost link of
 * every chain. Directives that register no handler (bind, health, ready,
 * reload) still run their setup in this order.
 *
 * @module
 */

import type { PluginDefinition } from "./plugin.ts";
import { reloadPlugin } from "../plugins/reload/mod.ts";
import { bufsizePlugin } from "../plugins/bufsize/mod.ts";
import { bindPlugin } from "../plugins/bind/mod.ts";
import { debugPlugin } from "../plugins/debug/mod.ts";
import { readyPlugin } from "../plugins/ready/mod.ts";
import { healthPlugin } from "../plugins/health/mod.ts";
import { prometheusPlugin } from "../plugins/prometheus/mod.ts";
import { errorsPlugin } from "../plugins/errors/mod.ts";
import { logPlugin } from "../plugins/log/mod.ts";
import { loadbalancePlugin } from "../plugins/loadbalance/mod.ts";
import { cachePlugin } from "../plugins/cache/mod.ts";
import { idetcdPlugin } from "../plugins/idetcd/mod.ts";
import { etcdPlugin } from "../plugins/etcd/mod.ts";
import { forwardPlugin } from "../plugins/forward/mod.ts";
import { whoamiPlugin } from "../plugins/whoami/mod.ts";

/** Every plugin, in chain order (CoreDNS's plugin.cfg order for those we have). */
export const PLUGINS: readonly PluginDefinition[] = [
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
];

const byName = new Map(PLUGINS.map((p) => [p.name, p]));

/** Whether `name` is a directive idetcd knows (plus `import`, handled by the parser). */
export function isDirective(name: string): boolean {
  return byName.has(name);
}

/** The definition of a directive. */
export function pluginByName(name: string): PluginDefinition | undefined {
  return byName.get(name);
}
