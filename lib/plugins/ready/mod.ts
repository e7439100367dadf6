/**
 * ready: `GET /ready` answers 200 `OK` once every chain plugin that can tell
 * (Plugin.ready) says it is ready, else 503 with their sorted names, as
 * CoreDNS's ready plugin. Not in the DNS chain.
 *
 * Unlike setup, which only sees its own block, the handler reads the whole
 * configuration the server is starting or serving, which its startup hook
 * receives, so plugins of every server block count. A final stop (not a
 * reload) turns it to 503 "Shutting down".
 *
 * @module
 */

import { onlyOnce } from "../../corefile/dispenser.ts";
import type { Directive } from "../../corefile/types.ts";
import type { Logger } from "../../log.ts";
import type { ConfigView, Plugin, PluginDefinition } from "../../server/plugin.ts";
import { type HttpAddress, HttpEndpoint, parseHttpAddress, textResponse } from "../health/http.ts";

/** CoreDNS's default ready address. */
export const DEFAULT_READY_ADDRESS = ":8181";

/** `until-ready`: a plugin that said ready once is not asked again; `continuously`: always asked. */
export type MonitorMode = "until-ready" | "continuously";

/** A parsed `ready` directive. */
export interface ReadyConfig {
  /** Where /ready is served. */
  address: HttpAddress;
  /** Whether a plugin that said ready once is asked again. */
  monitor: MonitorMode;
}

/** Reads `ready [ADDRESS] { monitor until-ready|continuously }` (once per block). */
export function parseReady(directives: Directive[]): ReadyConfig {
  const d = onlyOnce("ready", directives);
  const at = d.nextArg() ? d.token() : undefined;
  if (d.nextArg()) throw d.argErr();
  const address = parseHttpAddress(at?.text ?? DEFAULT_READY_ADDRESS, at, "ready");
  let monitor: MonitorMode = "until-ready";
  for (const line of d.blockLines()) {
    if (line.val() !== "monitor") throw line.argErr();
    if (!line.nextArg()) throw line.argErr();
    const mode = line.val();
    if (line.nextArg()) throw line.argErr();
    if (mode !== "until-ready" && mode !== "continuously") {
      throw line.err(
        `monitor type must be 'until-ready' or 'continuously', got '${mode}'`,
        line.line.args[0],
      );
    }
    monitor = mode;
  }
  return { address, monitor };
}

/** Every chain plugin with a ready() in `config`, each once (blocks of one key list share them). */
export function readinessPlugins(config: ConfigView): Plugin[] {
  const seen = new Set<Plugin>();
  for (const block of config.blocks) {
    for (const p of block.plugins) if (typeof p.ready === "function") seen.add(p);
  }
  return [...seen];
}

/**
 * The sorted, distinct names of the plugins of `config` not ready yet.
 * `confirmed` holds the plugins that said ready once: `until-ready` does
 * not ask them again (a reload makes new ones); it gains the ones that say
 * so now.
 */
export function notReadyPlugins(
  config: ConfigView,
  mode: MonitorMode,
  confirmed: WeakSet<Plugin>,
): string[] {
  const names = new Set<string>();
  for (const p of readinessPlugins(config)) {
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
  /**
   * The configurations started and not yet shut down, oldest first. The
   * newest is the one asked: a reload's new configuration from its startup
   * on; the old one again when the new one fails and is shut down.
   */
  #configs: ConfigView[] = [];
  /** Set by a final stop: from then on we are going away. */
  #stopping = false;
  #log: Logger;
  /** Plugins that reported ready once (see {@link notReadyPlugins}). */
  #confirmed = new WeakSet<Plugin>();
  /** The not-ready list last logged ("" once ready); undefined before the first request. */
  #lastNotReady?: string;

  constructor(address: HttpAddress, log: Logger) {
    this.#log = log;
    this.#endpoint = new HttpEndpoint(address, "ready");
    this.#endpoint.route("/ready", () => this.#answer());
  }

  /** A configuration naming this address is starting (every block's hook brings the same one). */
  started(config: ConfigView): void {
    if (!this.#configs.includes(config)) this.#configs.push(config);
  }

  /** That configuration stopped; `final` when the whole server stops. */
  stopped(config: ConfigView | undefined, final: boolean): void {
    this.#configs = this.#configs.filter((c) => c !== config);
    if (final) this.#stopping = true;
  }

  #answer(): Response {
    if (this.#stopping) return textResponse(503, "Shutting down");
    const config = this.#configs.at(-1);
    // Before any configuration started, nothing is ready (and nothing is shutting down either).
    if (!config) return textResponse(503, "");
    const waiting = notReadyPlugins(config, this.monitor, this.#confirmed);
    const list = waiting.join(",");
    this.#noteState(config, list);
    if (waiting.length === 0) return textResponse(200, "OK");
    return textResponse(503, list);
  }

  /**
   * Logs the readiness only when it changes (not ready, a different set not
   * ready, ready), not on every request: probes poll every few seconds, and a
   * line per probe would bury the change itself.
   */
  #noteState(config: ConfigView, notReady: string): void {
    if (notReady === this.#lastNotReady) return;
    this.#lastNotReady = notReady;
    if (notReady !== "") {
      this.#log.info(`Plugins not ready: ${JSON.stringify(notReady)}`);
      return;
    }
    const names = [...new Set(readinessPlugins(config).map((p) => p.name))].sort().join(",");
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
    let mine: ConfigView | undefined;
    ctx.onStartup((starting) => {
      mine = starting;
      server.started(starting);
    });
    ctx.onShutdown(({ final }) => server.stopped(mine, final));
    return null;
  },
};
