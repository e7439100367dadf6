/**
 * A running server: configuration, listeners, startup/shutdown hooks, and
 * graceful reload (the new configuration is built and started before the
 * old one is stopped; on failure the old one keeps running).
 *
 * Everything a server needs is passed in ({@link InstanceOptions}: the
 * plugin list, how to read the Corefile again) and everything plugins may
 * ask of it goes out through their SetupContext (`server`, the hooks), so
 * two Instances in one process share nothing but the process-wide logger
 * and metrics registry.
 *
 * @module
 */

import { CorefileError, type ServerBlock } from "../corefile/types.ts";
import type { Logger } from "../log.ts";
import { buildConfig, type Config } from "./config.ts";
import { Dispatcher } from "./dispatch.ts";
import { DEFAULT_TCP_LIMITS, Listener } from "./listen.ts";
import { type UdpChoice, UdpPaths } from "./udp/mod.ts";
import type { PluginDefinition, ServerControl, ShutdownEvent } from "./plugin.ts";
import { Resources } from "./resources.ts";

/** Options for {@link Instance}. */
export interface InstanceOptions {
  /** The plugins, in chain order: the composition root's list (plugins.ts). */
  plugins: readonly PluginDefinition[];
  /** Port for server keys that name none (-dns.port). */
  defaultPort: number;
  /** Folder of the Corefile, for relative paths in it. */
  configDir: string;
  /** The server's logger; plugins get children of it. */
  log: Logger;
  /** Called with an error a plugin found in the background that the server cannot run on. */
  onFatal?: (error: Error) => void;
  /**
   * Reads and parses the Corefile again, as the program loaded it: what
   * {@link Instance.reload} and the reload plugin use. Without it a reload
   * keeps the running configuration.
   */
  readCorefile?: () => Promise<ServerBlock[]>;
  /** The `-udp` flag (main.ts): the UDP path; undefined goes by IDETCD_UDP, else auto. */
  udp?: UdpChoice;
}

interface Bound {
  listener: Listener;
  dispatcher: Dispatcher;
}

/** A reload's "why" and errors in the words main.ts uses for a start failure. */
function describe(err: unknown): string {
  if (err instanceof CorefileError) return err.describe();
  return err instanceof Error ? err.message : String(err);
}

/** The running server. */
export class Instance {
  #options: InstanceOptions;
  #resources = new Resources();
  /** Chooses every listener's UDP path, and says once why it is not the batched one. */
  #udpPaths: UdpPaths;
  #config?: Config;
  #release?: () => Promise<void>;
  #bound = new Map<string, Bound>();
  /** The last queued reload: reloads run one at a time, and stop() waits for them. */
  #reloading: Promise<boolean> = Promise.resolve(true);
  #stopping = false;
  /** What plugins see of this server (SetupContext.server). */
  #control: ServerControl = {
    readCorefile: () => this.#readCorefile(),
    reload: (why) => this.reload(why),
  };

  /** A server that runs nothing until {@link start}. */
  constructor(options: InstanceOptions) {
    this.#options = options;
    this.#udpPaths = new UdpPaths(options.udp);
  }

  /** The ports actually bound, by listen address ("[host]:port" -> port). */
  get ports(): number[] {
    return [...this.#bound.values()].map((b) => b.listener.boundPort);
  }

  /** The live configuration. */
  get config(): Config | undefined {
    return this.#config;
  }

  /** Builds the configuration, runs startup hooks, then opens the listeners. Throws why not. */
  async start(blocks: ServerBlock[]): Promise<void> {
    await this.#apply(blocks);
  }

  /**
   * Reads the Corefile again and swaps configurations gracefully: what
   * SIGUSR1/SIGHUP and the reload plugin ask for. Reloads run one at a
   * time, in the order asked. Resolves true when the new configuration
   * runs; false when the old one was kept (logged with the reason), there
   * is no way to read the Corefile, or the server is stopping.
   */
  reload(why: string): Promise<boolean> {
    if (this.#stopping) return Promise.resolve(false);
    this.#reloading = this.#reloading.then(async () => {
      if (this.#stopping) return false;
      try {
        await this.#apply(await this.#readCorefile());
        this.#options.log.info(`plugin/reload: reloaded configuration (${why})`);
        return true;
      } catch (err) {
        this.#options.log.error(
          `plugin/reload: keeping the running configuration: ${describe(err)}`,
        );
        return false;
      }
    });
    return this.#reloading;
  }

  #readCorefile(): Promise<ServerBlock[]> {
    const read = this.#options.readCorefile;
    if (!read) return Promise.reject(new Error("no Corefile reader installed"));
    return read();
  }

  async #apply(blocks: ServerBlock[]): Promise<void> {
    const scope = this.#resources.scope();
    let config: Config;
    try {
      config = await buildConfig(blocks, {
        plugins: this.#options.plugins,
        defaultPort: this.#options.defaultPort,
        configDir: this.#options.configDir,
        resources: this.#resources,
        log: this.#options.log,
        server: this.#control,
        fatal: this.#options.onFatal,
      });
    } catch (err) {
      await scope.release();
      throw err;
    }
    try {
      for (const fn of config.startup) await fn(config);
    } catch (err) {
      // Hooks that ran (ready, prometheus) took this configuration as the
      // one starting: their shutdown hooks put the running one back.
      await this.#runShutdown(config, { final: false });
      await scope.release();
      throw err;
    }

    // Open new listeners first, so a bind failure leaves the old config serving.
    const wanted = new Map(config.listeners.map((l) => [`[${l.host}]:${l.port}`, l]));
    const opened: [string, Bound][] = [];
    try {
      for (const [id, l] of wanted) {
        const existing = this.#bound.get(id);
        if (existing) continue;
        const dispatcher = new Dispatcher(l, this.#options.log);
        const listener = new Listener(
          l.host,
          l.port,
          dispatcher,
          this.#options.log,
          DEFAULT_TCP_LIMITS,
          this.#udpPaths,
        );
        listener.open();
        opened.push([id, { listener, dispatcher }]);
      }
    } catch (err) {
      for (const [, b] of opened) await b.listener.close();
      await this.#runShutdown(config, { final: false });
      await scope.release();
      throw err;
    }
    for (const [id, b] of opened) this.#bound.set(id, b);
    for (const [id, b] of this.#bound) {
      const l = wanted.get(id);
      if (l) b.dispatcher.update(l);
    }
    for (const [id, b] of [...this.#bound]) {
      if (!wanted.has(id)) {
        await b.listener.close();
        this.#bound.delete(id);
      }
    }
    const old = this.#config;
    const oldRelease = this.#release;
    this.#config = config;
    this.#release = () => scope.release();
    if (old) await this.#runShutdown(old, { final: false });
    await oldRelease?.();
  }

  async #runShutdown(config: Config, event: ShutdownEvent): Promise<void> {
    for (const fn of config.shutdown) {
      try {
        await fn(event);
      } catch (err) {
        this.#options.log.error(`shutdown: ${(err as Error).message}`);
      }
    }
  }

  /**
   * Waits for a reload under way, runs the shutdown hooks as a final stop
   * (ready answers "Shutting down"; health's lameduck waits there, while DNS
   * is still answered, as in CoreDNS), then closes the listeners and
   * releases shared resources (the idetcd lease is revoked last).
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#reloading;
    if (this.#config) await this.#runShutdown(this.#config, { final: true });
    for (const b of this.#bound.values()) await b.listener.close();
    this.#bound.clear();
    this.#config = undefined;
    await this.#release?.();
    this.#release = undefined;
  }
}
