/**
 * ready: `GET /ready` answers 200 `OK` once every chain plugin that can tell
 * (Plugin.ready) says it is ready, else 503 with their sorted names, as
 * CoreDNS's ready plugin. Not in the DNS chain.
 *
 * Unlike setup, which only sees its own block, the handler reads the
 * configuration the server is starting or serving (`currentConfigs` of
 * lib/server/instance.ts), so plugins of every server block count.
 *
 * @module
 */

import { argError, CorefileError, type Directive } from "../../corefile/types.ts";
import type { Logger } from "../../log.ts";
import { currentConfigs } from "../../server/instance.ts";
import type { Plugin, PluginDefinition } from "../../server/plugin.ts";
import { type HttpAddress, HttpEndpoint, parseHttpAddress, textResponse } from "../health/http.ts";

/** CoreDNS's default ready address. */
export const DEFAULT_READY_ADDRESS = ":8181";

/** `until-ready`: a plugin that said ready once is not asked again; `continuously`: always asked. */
export type MonitorMode = "until-ready" | "continuously";

/** A parsed `ready` directive. */
export interface ReadyConfig {
  address: HttpAddress;
  monitor: MonitorMode;
}

/** Reads `ready [ADDRESS] { monitor until-ready|continuously }` (once per block). */
export function parseReady(directives: Directive[]): ReadyConfig {
  if (directives.length > 1) {
    throw new CorefileError(
      "this plugin can only be used once per Server Block",
      directives[1].name,
      "ready",
    );
  }
  const d = directives[0];
  if (d.args.length > 1) throw argError(d.args[1], "ready");
  const address = parseHttpAddress(d.args[0]?.text ?? DEFAULT_READY_ADDRESS, d.args[0], "ready");
  let monitor: MonitorMode = "until-ready";
  for (const line of d.block ?? []) {
    if (line.name.text !== "monitor") throw argError(line.name, "ready");
    if (line.args.length !== 1) throw argError(line.args[1] ?? line.name, "ready");
    const mode = line.args[0].text;
    if (mode !== "until-ready" && mode !== "continuously") {
      throw new CorefileError(
        `monitor type must be 'until-ready' or 'continuously', got '${mode}'`,
        line.args[0],
        "ready",
      );
    }
    monitor = mode;
  }
  return { address, monitor };
}

/** Plugins that reported ready once; `until-ready` does not ask them again (a reload makes new ones). */
const confirmed = new WeakSet<Plugin>();

/** Every chain plugin with a ready() in the configurations being started or served. */
export function readinessPlugins(): Plugin[] {
  const seen = new Set<Plugin>();
  for (const config of currentConfigs.values()) {
    for (const block of config.blocks) {
      for (const p of block.plugins) if (typeof p.ready === "function") seen.add(p);
    }
  }
  return [...seen];
}

/** The sorted, distinct names of the plugins not ready yet. */
export function notReadyPlugins(mode: MonitorMode): string[] {
  const names = new Set<string>();
  for (const p of readinessPlugins()) {
    if (mode === "until-ready" && confirmed.has(p)) continue;
    let ok = false;
    try {
      ok = p.ready!() === true;
    } catch {
      ok = false;
    }
    if (ok) confirmed.add(p);
    else names.add(p.name);
  }
  return [...names].sort();
}

/** The /ready server of one address, shared by the blocks and configurations naming it. */
class ReadyServer {
  #endpoint: HttpEndpoint;
  /** Set by the last block that configured this address. */
  monitor: MonitorMode = "until-ready";
  /** True once a configuration using it has started (so "no configuration" means stopping). */
  started = false;
  #log: Logger;
  /** The not-ready list last logged ("" once ready); undefined before the first request. */
  #lastNotReady?: string;

  constructor(address: HttpAddress, log: Logger) {
    this.#log = log;
    this.#endpoint = new HttpEndpoint(address, "ready");
    this.#endpoint.route("/ready", () => this.#answer());
  }

  #answer(): Response {
    // stop() drops the configuration before anything else: from then on we are going away.
    if (currentConfigs.size === 0) {
      return textResponse(503, this.started ? "Shutting down" : "");
    }
    const waiting = notReadyPlugins(this.monitor);
    const list = waiting.join(",");
    this.#noteState(list);
    if (waiting.length === 0) return textResponse(200, "OK");
    return textResponse(503, list);
  }

  /**
   * Logs the readiness only when it changes (not ready, a different set not
   * ready, ready), not on every request: probes poll every few seconds, and a
   * line per probe would bury the change itself.
   */
  #noteState(notReady: string): void {
    if (notReady === this.#lastNotReady) return;
    this.#lastNotReady = notReady;
    if (notReady !== "") {
      this.#log.info(`Plugins not ready: ${JSON.stringify(notReady)}`);
      return;
    }
    const names = [...new Set(readinessPlugins().map((p) => p.name))].sort().join(",");
    this.#log.info(names === "" ? "Ready" : `Plugins ready: ${JSON.stringify(names)}`);
  }

  close(): Promise<void> {
    return this.#endpoint.close();
  }
}

/** The ready directive: `ready [ADDRESS] { monitor until-ready|continuously }`; no handler. */
export const readyPlugin: PluginDefinition = {
  name: "ready",
  setup(ctx) {
    const config = parseReady(ctx.directives);
    const server = ctx.resources.acquire(
      `ready:${config.address.text}`,
      () => new ReadyServer(config.address, ctx.log),
    );
    server.monitor = config.monitor;
    ctx.onStartup(() => {
      server.started = true;
    });
    return null;
  },
};
