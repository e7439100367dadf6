/**
 * Turns parsed server blocks into running configuration: zones, listen
 * addresses and one plugin chain per block, with the plugins it is given
 * (the composition root's list; this module knows none by itself).
 *
 * @module
 */

import { CorefileError, type Directive, type ServerBlock } from "../corefile/types.ts";
import { parseKey, type ServerKey } from "../corefile/keys.ts";
import type { Logger } from "../log.ts";
import {
  bareReply,
  type ConfigView,
  type Handler,
  type PerQuery,
  type Plugin,
  type PluginDefinition,
  type Reply,
  type Request,
  type ResourcePool,
  type ServerControl,
  type ServerOptions,
  type SetupContext,
  type ShutdownHook,
  type StartupHook,
} from "./plugin.ts";
import { Rcode } from "../dns/types.ts";

/** One server block after setup. */
export interface BlockRuntime {
  /** The block's zones (one per key). */
  zones: string[];
  /** The keys behind the zones, for error positions. */
  keys: ServerKey[];
  /** The listen port. */
  port: number;
  /** The addresses to listen on; empty = every address. */
  bind: string[];
  /** The EDNS0 UDP size cap of its queries (`bufsize`); unset means DEFAULT_UDP_SIZE. */
  udpSize?: number;
  /** The chain's entry point; null when the block has no plugins (answers REFUSED). */
  chain: Handler | null;
  /** The chain's plugins, outermost first. */
  plugins: Plugin[];
  /** Whether the chain may answer classes other than IN (forward is present). */
  anyClass: boolean;
  /**
   * Whether replies of this chain may be kept for the fast path (see
   * {@link composeChain}); unset means no.
   */
  fast?: boolean;
}

/** A listen address and the zones served on it. */
export interface ListenerConfig {
  /** "" for every address, else an IP. */
  host: string;
  /** The port as configured (0 asks the system for one). */
  port: number;
  /** Zone -> block, for longest-suffix routing. */
  zones: Map<string, BlockRuntime>;
}

/**
 * A fully set-up configuration, not yet listening. It is itself the
 * {@link ConfigView} its startup hooks receive.
 */
export interface Config extends ConfigView {
  /** Every block, one per port of each server block. */
  blocks: BlockRuntime[];
  /** Every listen address with its zones. */
  listeners: ListenerConfig[];
  /** The server blocks it was built from. */
  corefile: ServerBlock[];
  /** Startup hooks, in setup order. */
  startup: StartupHook[];
  /** Shutdown hooks, in plugin order across blocks (see {@link buildConfig}). */
  shutdown: ShutdownHook[];
}

/** Inputs to {@link buildConfig}. */
export interface BuildOptions {
  /** The plugins, in chain order: the composition root's list. */
  plugins: readonly PluginDefinition[];
  /** Port for keys that name none (-dns.port). */
  defaultPort: number;
  /** Folder of the Corefile, for relative paths. */
  configDir: string;
  /** Shared resources of the running server. */
  resources: ResourcePool;
  /** The server's logger; each plugin gets a child. */
  log: Logger;
  /** The server running the configuration (SetupContext.server). */
  server: ServerControl;
  /** Where plugins report errors found in the background (see SetupContext.fatal). */
  fatal?: (error: Error) => void;
}

/** The answer a chain gives when it runs out of plugins. */
export function noNextPlugin(plugin: string): Reply {
  return bareReply(Rcode.ServerFailure, undefined, `plugin/${plugin}: no next plugin found`);
}

/**
 * Registered by the server for each query that reaches a plugin needing the
 * full path: an observer that returns no fast observer, so the dispatcher
 * keeps no reply produced while that plugin ran.
 */
const fullPathOnly = (): void => {};

/** A composed chain and whether any of its replies may be kept for the fast path. */
export interface Chain {
  /** The entry point; null for a block without plugins. */
  handler: Handler | null;
  /** False when the first plugin needs the full path (nothing the chain answers can be kept). */
  fast: boolean;
}

/**
 * Links `plugins` (outermost first) with their {@link PerQuery} roles. The
 * fast-path rule is decided here, once per chain: a plugin that needs the
 * full path marks every query it sees, so a reply it took part in is never
 * kept, while replies produced before the query reaches it (a cache hit in
 * front of `log` or `forward`) still are. Plugins that pass through or
 * observe cost nothing extra.
 */
export function composeChain(plugins: Plugin[], roles: readonly (PerQuery | undefined)[]): Chain {
  if (plugins.length === 0) return { handler: null, fast: false };
  let next: Handler = () => Promise.resolve(noNextPlugin(plugins[plugins.length - 1].name));
  for (let i = plugins.length - 1; i >= 0; i--) {
    const plugin = plugins[i];
    const after = next;
    if ((roles[i] ?? "needs-full-path") === "needs-full-path") {
      next = (req: Request) => {
        req.observe(fullPathOnly);
        return plugin.serve(req, after);
      };
    } else {
      next = (req: Request) => plugin.serve(req, after);
    }
  }
  return { handler: next, fast: (roles[0] ?? "needs-full-path") !== "needs-full-path" };
}

/**
 * Validates keys, runs every plugin's setup in list order for every block,
 * and groups blocks by listen address. Throws CorefileError.
 *
 * Shutdown hooks are kept in plugin order across blocks, as Caddy (hence
 * CoreDNS) registers them directive by directive: so every block's `ready`
 * says "Shutting down" before any `health` waits out its lameduck, and the
 * plugins after health still serve while it waits, whatever block they are
 * in.
 */
export async function buildConfig(blocks: ServerBlock[], options: BuildOptions): Promise<Config> {
  const startup: Config["startup"] = [];
  const shutdown: { order: number; fn: ShutdownHook }[] = [];
  const runtimes: BlockRuntime[] = [];

  for (const block of blocks) {
    const keys: ServerKey[] = [];
    for (const token of block.keys) {
      for (const key of parseKey(token, options.defaultPort)) {
        if (key.scheme !== "dns") {
          throw new CorefileError(
            `${key.scheme}:// is not supported by idetcd; serve plain DNS (dns:// or no scheme)`,
            token,
          );
        }
        keys.push(key);
      }
    }
    if (keys.length === 0) continue;
    const ports = new Set(keys.map((k) => k.port));
    const byDirective = new Map<string, Directive[]>();
    for (const d of block.directives) {
      const list = byDirective.get(d.name.text) ?? [];
      list.push(d);
      byDirective.set(d.name.text, list);
    }
    // Keys of one block with different ports become separate blocks sharing plugins,
    // as in CoreDNS; the common case is a single port.
    const serverOptions: ServerOptions = { bind: [] };
    const plugins: Plugin[] = [];
    const roles: (PerQuery | undefined)[] = [];
    const zones = keys.map((k) => k.zone);
    for (const [order, def] of options.plugins.entries()) {
      const directives = byDirective.get(def.name);
      if (!directives) continue;
      const ctx: SetupContext = {
        directives,
        zones,
        port: keys[0].port,
        configDir: options.configDir,
        serverOptions,
        resources: options.resources,
        log: options.log.child(`plugin/${def.name}`),
        server: options.server,
        onStartup: (fn) => startup.push(fn),
        onShutdown: (fn) => shutdown.push({ order, fn }),
        fatal: (error) => {
          if (options.fatal) options.fatal(error);
          else options.log.error(error.message);
        },
      };
      const plugin = await def.setup(ctx);
      if (plugin) {
        plugins.push(plugin);
        roles.push(def.perQuery);
      }
    }
    const chain = composeChain(plugins, roles);
    for (const port of ports) {
      const portKeys = keys.filter((k) => k.port === port);
      runtimes.push({
        zones: portKeys.map((k) => k.zone),
        keys: portKeys,
        port,
        bind: serverOptions.bind,
        udpSize: serverOptions.udpSize,
        chain: chain.handler,
        plugins,
        anyClass: plugins.some((p) => p.name === "forward"),
        fast: chain.fast,
      });
    }
  }
  return {
    blocks: runtimes,
    listeners: groupListeners(runtimes),
    corefile: blocks,
    startup,
    // Array.prototype.sort is stable: within one plugin, blocks keep file order.
    shutdown: shutdown.sort((a, b) => a.order - b.order).map((h) => h.fn),
  };
}

function groupListeners(blocks: BlockRuntime[]): ListenerConfig[] {
  const byAddress = new Map<string, ListenerConfig>();
  for (const block of blocks) {
    const hosts = block.bind.length ? block.bind : [""];
    for (const host of hosts) {
      const id = `[${host}]:${block.port}`;
      let listener = byAddress.get(id);
      if (!listener) {
        listener = { host, port: block.port, zones: new Map() };
        byAddress.set(id, listener);
      }
      for (const key of block.keys) {
        if (listener.zones.has(key.zone)) {
          throw new CorefileError(
            `cannot serve dns://${key.zone}:${block.port} - it is already defined`,
            key.token,
          );
        }
        listener.zones.set(key.zone, block);
      }
    }
  }
  // A wildcard listener and a specific one on the same port cannot both bind.
  for (const l of byAddress.values()) {
    if (l.host !== "") continue;
    for (const other of byAddress.values()) {
      if (other.host !== "" && other.port === l.port) {
        const zone = [...other.zones.keys()][0];
        throw new CorefileError(
          `cannot serve dns://${zone}:${other.port} - zone overlap listener capacity with ` +
            `dns://${[...l.zones.keys()][0]}:${l.port} (use bind in every block on port ${l.port})`,
        );
      }
    }
  }
  return [...byAddress.values()];
}
