/**
 * coredns_plugin_enabled: which plugins each server block with prometheus
 * runs, from the configuration a startup hook receives.
 *
 * @module
 */

import { type MetricFamily, registerCollector } from "../../server/metrics.ts";
import type { ConfigView } from "../../server/plugin.ts";
import { serverLabel } from "../../server/vars.ts";

/** coredns_plugin_enabled of one configuration: every plugin of each block that has prometheus. */
export function pluginEnabled(config: ConfigView): MetricFamily {
  const samples = new Map<string, Record<string, string>>();
  for (const block of config.blocks) {
    if (!block.plugins.some((p) => p.name === "prometheus")) continue;
    const hosts = block.bind.length ? block.bind : [""];
    for (const host of hosts) {
      for (const zone of block.zones) {
        for (const p of block.plugins) {
          const labels = { server: serverLabel(host, block.port), zone, view: "", name: p.name };
          samples.set(JSON.stringify(labels), labels);
        }
      }
    }
  }
  return {
    name: "coredns_plugin_enabled",
    help: "A metric that indicates whether a plugin is enabled on per server and zone basis.",
    type: "gauge",
    samples: [...samples.values()].map((labels) => ({ labels, value: 1 })),
  };
}

/**
 * The scrape-time source of coredns_plugin_enabled for one server, shared
 * by its configurations: the newest one started and not yet shut down
 * counts (a reload's from its startup on; the old one again when the new
 * one fails).
 */
export class PluginEnabled {
  #configs: ConfigView[] = [];
  #unregister: () => void;

  constructor() {
    // A collector of its own per server: two servers in one process report their own blocks.
    this.#unregister = registerCollector(() => {
      const config = this.#configs.at(-1);
      return config ? [pluginEnabled(config)] : [];
    });
  }

  /** `config` started: it counts from now on (unless a newer one runs). */
  started(config: ConfigView): void {
    if (!this.#configs.includes(config)) this.#configs.push(config);
  }

  /** `config` stopped: it counts no more. */
  stopped(config: ConfigView | undefined): void {
    this.#configs = this.#configs.filter((c) => c !== config);
  }

  /** Removes the collector (the last configuration holding it let go). */
  close(): void {
    this.#unregister();
  }
}
