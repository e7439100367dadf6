/**
 * A running server: configuration, listeners, startup/shutdown hooks, and
 * graceful reload (the new configuration is built and started before the
 * old one is stopped; on failure the old one keeps running).
 *
 * @module
 */

import type { ServerBlock } from "../corefile/types.ts";
import type { Logger } from "../log.ts";
import { buildConfig, type Config } from "./config.ts";
import { Dispatcher, type PacketObserver } from "./dispatch.ts";
import { Listener } from "./listen.ts";
import { Resources } from "./resources.ts";

/** Options for {@link Instance}. */
export interface InstanceOptions {
  defaultPort: number;
  configDir: string;
  log: Logger;
  /** Called with an error a plugin found in the background that the server cannot run on. */
  onFatal?: (error: Error) => void;
}

interface Bound {
  listener: Listener;
  dispatcher: Dispatcher;
}

/** Observers of every packet on every listener (set by the prometheus plugin). */
export const packetObservers = new Set<PacketObserver>();

/**
 * The configuration each running Instance is starting or serving, for plugins
 * that look across server blocks (ready checks every chain plugin's ready();
 * prometheus reports coredns_plugin_enabled). Set before startup hooks run,
 * put back when an apply fails, and removed when stop() begins, so shutdown
 * hooks can tell a stop (no entry) from a reload (health's lameduck, ready's
 * "Shutting down").
 */
export const currentConfigs = new Map<Instance, Config>();

/** The running server. */
export class Instance {
  #options: InstanceOptions;
  #resources = new Resources();
  #config?: Config;
  #release?: () => Promise<void>;
  #bound = new Map<string, Bound>();

  constructor(options: InstanceOptions) {
    this.#options = options;
  }

  /** The ports actually bound, by listen address ("[host]:port" -> port). */
  get ports(): number[] {
    return [...this.#bound.values()].map((b) => b.listener.boundPort);
  }

  /** The live configuration. */
  get config(): Config | undefined {
    return this.#config;
  }

  /** Builds the configuration, runs startup hooks, then opens the listeners. */
  async start(blocks: ServerBlock[]): Promise<void> {
    await this.#apply(blocks);
  }

  /** Replaces the configuration; on error the current one stays and the error is thrown. */
  async reload(blocks: ServerBlock[]): Promise<void> {
    await this.#apply(blocks);
  }

  async #apply(blocks: ServerBlock[]): Promise<void> {
    const scope = this.#resources.scope();
    let config: Config;
    try {
      config = await buildConfig(blocks, {
        defaultPort: this.#options.defaultPort,
        configDir: this.#options.configDir,
        resources: this.#resources,
        log: this.#options.log,
        fatal: this.#options.onFatal,
      });
      currentConfigs.set(this, config);
      for (const fn of config.startup) await fn();
    } catch (err) {
      this.#restoreCurrent();
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
        dispatcher.packetObserver = notifyObservers;
        const listener = new Listener(l.host, l.port, dispatcher, this.#options.log);
        listener.open();
        opened.push([id, { listener, dispatcher }]);
      }
    } catch (err) {
      this.#restoreCurrent();
      for (const [, b] of opened) await b.listener.close();
      await this.#runShutdown(config);
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
    if (old) await this.#runShutdown(old);
    await oldRelease?.();
  }

  /** After a failed apply, the running configuration (if any) is current again. */
  #restoreCurrent(): void {
    if (this.#config) currentConfigs.set(this, this.#config);
    else currentConfigs.delete(this);
  }

  async #runShutdown(config: Config): Promise<void> {
    for (const fn of config.shutdown) {
      try {
        await fn();
      } catch (err) {
        this.#options.log.error(`shutdown: ${(err as Error).message}`);
      }
    }
  }

  /**
   * Runs the shutdown hooks (health's lameduck waits there, while DNS is still
   * answered, as in CoreDNS), then closes the listeners and releases shared
   * resources (the idetcd lease is revoked last).
   */
  async stop(): Promise<void> {
    currentConfigs.delete(this);
    if (this.#config) await this.#runShutdown(this.#config);
    for (const b of this.#bound.values()) await b.listener.close();
    this.#bound.clear();
    this.#config = undefined;
    await this.#release?.();
    this.#release = undefined;
  }
}

function notifyObservers(...args: Parameters<PacketObserver>): void {
  for (const observe of packetObservers) observe(...args);
}
