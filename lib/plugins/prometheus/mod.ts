/**
 * prometheus: counts queries per server, zone and type and serves every
 * registered metric on `http://ADDRESS/metrics`, as CoreDNS's metrics plugin
 * (names and labels as CoreDNS 1.11+).
 *
 * The chain link (handler.ts) counts each reply through `req.observe`, and
 * the fast-path answers sent from a kept reply through the observer it
 * returns there. Queries that never enter a chain are counted by the
 * server itself, under the zone `dropped`, in the same families
 * (lib/server/vars.ts, CoreDNS's plugin/metrics/vars).
 * coredns_plugin_enabled comes from the configuration the startup hook
 * receives (plugin_enabled.ts).
 *
 * @module
 */

import type { ConfigView, PluginDefinition } from "../../server/plugin.ts";
import { queryMetrics } from "../../server/vars.ts";
import denoJson from "../../../deno.json" with { type: "json" };
import { metricsEndpoint } from "./endpoint.ts";
import { countingPlugin } from "./handler.ts";
import { PluginEnabled } from "./plugin_enabled.ts";
import { runtimeCollector } from "./runtime.ts";
import { parsePrometheus } from "./setup.ts";

export { DEFAULT_METRICS_ADDRESS, parsePrometheus, type PrometheusConfig } from "./setup.ts";
export { pluginEnabled } from "./plugin_enabled.ts";

/** The prometheus directive: `prometheus [ADDRESS] { runtime_metrics }`; counts queries. */
export const prometheusPlugin: PluginDefinition = {
  name: "prometheus",
  perQuery: "observes-reply",
  setup(ctx) {
    const config = parsePrometheus(ctx.directives);
    const metrics = queryMetrics();
    metrics.buildInfo.set(
      { version: denoJson.version, revision: "", goversion: `deno${Deno.version.deno}` },
      1,
    );
    ctx.resources.acquire(
      `prometheus:${config.address.text}`,
      () => metricsEndpoint(config.address),
    );
    const enabled = ctx.resources.acquire("prometheus:plugin_enabled", () => new PluginEnabled());
    let mine: ConfigView | undefined;
    ctx.onStartup((starting) => {
      mine = starting;
      enabled.started(starting);
    });
    ctx.onShutdown(() => enabled.stopped(mine));
    if (config.runtimeMetrics) ctx.resources.acquire("prometheus:runtime", runtimeCollector);
    return countingPlugin({
      metrics,
      zones: ctx.zones,
      port: ctx.port,
      bind: ctx.serverOptions.bind,
    });
  },
};
