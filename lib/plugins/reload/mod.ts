/**
 * reload: re-reads the Corefile every INTERVAL ± JITTER/2 and, when the
 * SHA-512 of its parsed blocks (imports included) changed, asks for a
 * graceful reload, as CoreDNS's reload plugin. A Corefile that does not
 * parse is reported and skipped; one that fails to start leaves the old
 * configuration running (main.ts logs why) and is not retried until it
 * changes again. No DNS handler.
 *
 * One checker serves the whole server (a shared resource): every block's
 * `reload` stages its interval (the last one wins, as in CoreDNS), and the
 * first startup hook of a configuration applies it and hashes the Corefile
 * that configuration was built from (which the hook receives). The
 * checker reads the Corefile and reloads through the server's
 * SetupContext.server (Instance.reload, which SIGHUP also calls).
 *
 * @module
 */

import { Dispenser } from "../../corefile/dispenser.ts";
import { CorefileError, type Directive, type ServerBlock } from "../../corefile/types.ts";
import { parseDuration } from "../../go/time.ts";
import type { Logger } from "../../log.ts";
import { counter, gauge } from "../../server/metrics.ts";
import type { PluginDefinition, ServerControl } from "../../server/plugin.ts";

/** CoreDNS's defaults and limits, in seconds. */
export const DEFAULT_INTERVAL = 30;
/** Default jitter (seconds). */
export const DEFAULT_JITTER = 15;
/** Smallest interval accepted (seconds). */
export const MIN_INTERVAL = 2;
/** Smallest non-zero jitter accepted (seconds). */
export const MIN_JITTER = 1;

/** A parsed `reload` directive; jitter already capped at interval/2. */
export interface ReloadConfig {
  /** Seconds between checks, before jitter. */
  interval: number;
  /** Seconds of spread; the actual period is interval ± jitter/2. */
  jitter: number;
}

function duration(text: string, where: Directive["name"]): number {
  try {
    return parseDuration(text);
  } catch (err) {
    throw new CorefileError((err as Error).message, where, "reload");
  }
}

/** Reads `reload [INTERVAL] [JITTER]`; only the first occurrence in a block counts (as CoreDNS). */
export function parseReload(directives: Directive[]): ReloadConfig {
  const line = new Dispenser("reload", directives[0]);
  const args = line.remainingArgs();
  if (args.length > 2 || line.hasBlock()) throw line.argErr();
  const d = { name: line.name, args };
  const interval = d.args[0] ? duration(d.args[0].text, d.args[0]) : DEFAULT_INTERVAL;
  if (interval < MIN_INTERVAL) {
    throw new CorefileError(
      `interval value must be greater or equal to ${MIN_INTERVAL}s`,
      d.args[0] ?? d.name,
      "reload",
    );
  }
  let jitter = d.args[1] ? duration(d.args[1].text, d.args[1]) : DEFAULT_JITTER;
  if (jitter < MIN_JITTER && jitter !== 0) {
    throw new CorefileError(
      `jitter value must be greater or equal to ${MIN_JITTER}s`,
      d.args[1] ?? d.name,
      "reload",
    );
  }
  if (jitter > interval / 2) jitter = interval / 2;
  return { interval, jitter };
}

/** The period to use: interval plus a random offset in [-jitter/2, jitter/2). */
export function jitteredInterval(config: ReloadConfig, random: () => number = Math.random): number {
  if (config.jitter === 0) return config.interval;
  return config.interval + random() * config.jitter - config.jitter / 2;
}

/**
 * Hex SHA-512 of parsed server blocks. Imports are already expanded by the
 * parser, so imported files count; as in CoreDNS (which hashes the JSON of
 * the parsed blocks), comments and spacing that move no token do not.
 */
export async function corefileDigest(blocks: readonly ServerBlock[]): Promise<string> {
  const bytes = new TextEncoder().encode(JSON.stringify(blocks));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function reloadMetrics() {
  return {
    failed: counter({
      name: "coredns_reload_failed_total",
      help: "Counter of the number of failed reload attempts.",
    }),
    info: gauge({
      name: "coredns_reload_version_info",
      help:
        "A metric with a constant '1' value labeled by hash, and value which type of hash generated.",
      labelNames: ["hash", "value"],
    }),
  };
}

function describe(err: unknown): string {
  if (err instanceof CorefileError) return err.describe();
  return err instanceof Error ? err.message : String(err);
}

/** The server's Corefile watcher; closed when no configuration uses `reload` any more. */
class ReloadChecker {
  #log: Logger;
  #server: ServerControl;
  #periodMs = DEFAULT_INTERVAL * 1000;
  #staged?: number;
  #baseline?: string;
  #timer?: ReturnType<typeof setTimeout>;
  #running = false;
  #closed = false;
  /** The last read/parse problem reported, so a broken file is reported once, not every tick. */
  #lastProblem?: string;

  constructor(log: Logger, server: ServerControl) {
    this.#log = log;
    this.#server = server;
  }

  /** Records the period a block asked for; applied by the next {@link start}. */
  stage(periodSeconds: number): void {
    this.#staged = periodSeconds;
  }

  /**
   * Applies the staged period and hashes `blocks`, the Corefile of the
   * configuration being started (exactly what runs, not a file that may
   * have changed since); once per configuration.
   */
  async start(blocks: readonly ServerBlock[]): Promise<void> {
    if (this.#staged === undefined || this.#closed) return;
    this.#periodMs = this.#staged * 1000;
    this.#staged = undefined;
    const digest = await corefileDigest(blocks);
    const m = reloadMetrics();
    if (this.#baseline && this.#baseline !== digest) {
      m.info.remove({ hash: "sha512", value: this.#baseline });
    }
    this.#baseline = digest;
    this.#lastProblem = undefined;
    m.info.set({ hash: "sha512", value: digest }, 1);
    this.#log.info(`Running configuration SHA512 = ${digest}`);
    if (!this.#running) this.#schedule();
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    this.#timer = setTimeout(() => this.#tick(), this.#periodMs);
  }

  async #tick(): Promise<void> {
    this.#running = true;
    try {
      await this.#check();
    } catch (err) {
      this.#log.error(`check failed: ${describe(err)}`);
    } finally {
      this.#running = false;
      this.#schedule();
    }
  }

  async #check(): Promise<void> {
    let blocks;
    try {
      blocks = await this.#server.readCorefile();
    } catch (err) {
      const problem = describe(err);
      if (problem !== this.#lastProblem) this.#log.warning(`Corefile parse failed: ${problem}`);
      this.#lastProblem = problem;
      return;
    }
    this.#lastProblem = undefined;
    const digest = await corefileDigest(blocks);
    if (this.#baseline === undefined) {
      this.#baseline = digest;
      return;
    }
    if (digest === this.#baseline) return;
    // Do not try the same file again, even if it fails to start (CoreDNS).
    this.#baseline = digest;
    const ok = await this.#server.reload("Corefile changed");
    if (!ok) reloadMetrics().failed.inc();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }
}

/** The reload directive: `reload [INTERVAL] [JITTER]`; no handler. */
export const reloadPlugin: PluginDefinition = {
  name: "reload",
  setup(ctx) {
    const config = parseReload(ctx.directives);
    const checker = ctx.resources.acquire("reload", () => new ReloadChecker(ctx.log, ctx.server));
    checker.stage(jitteredInterval(config));
    ctx.onStartup((starting) => checker.start(starting.corefile));
    return null;
  },
};
