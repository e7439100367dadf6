/**
 * health: `GET /health` answers 200 `OK` while the process is up, as
 * CoreDNS's health plugin; `lameduck` keeps it answering for a while when
 * the server stops. Not in the DNS chain.
 *
 * @module
 */

import { dispensers } from "../../corefile/dispenser.ts";
import type { Directive } from "../../corefile/types.ts";
import { formatGoDuration, parseDuration } from "../../go/time.ts";
import type { Logger } from "../../log.ts";
import { counter, histogram, SLIM_TIME_BUCKETS } from "../../server/metrics.ts";
import type { PluginDefinition, ShutdownHook } from "../../server/plugin.ts";
import { type HttpAddress, HttpEndpoint, parseHttpAddress, textResponse } from "./http.ts";

/** CoreDNS's default health address. */
export const DEFAULT_HEALTH_ADDRESS = ":8080";

/** A parsed `health` directive (every occurrence folded in; the last address wins). */
export interface HealthConfig {
  /** Where /health is served (the last address of the block wins). */
  address: HttpAddress;
  /** Seconds to keep answering after a stop begins; 0 for none. */
  lameduck: number;
}

/** Reads every `health [ADDRESS] { lameduck DURATION }` of a block. */
export function parseHealth(directives: Directive[]): HealthConfig {
  let address = parseHttpAddress(DEFAULT_HEALTH_ADDRESS, undefined, "health");
  let lameduck = 0;
  for (const d of dispensers("health", directives)) {
    if (d.nextArg()) {
      const at = d.token();
      if (d.nextArg()) throw d.argErr();
      address = parseHttpAddress(at.text, at, "health");
    }
    for (const line of d.blockLines()) {
      if (line.val() !== "lameduck") throw line.argErr();
      if (!line.nextArg()) throw line.argErr();
      const at = line.token();
      if (line.nextArg()) throw line.argErr();
      try {
        lameduck = parseDuration(at.text);
      } catch (err) {
        throw line.err(
          `unable to parse lameduck duration value: '${at.text}' : ${(err as Error).message}`,
          at,
        );
      }
    }
  }
  return { address, lameduck };
}

/**
 * The /health server of one address, shared by every block (and every
 * configuration generation) naming it. Also runs CoreDNS's once-a-second
 * self-check feeding coredns_health_request_* metrics.
 */
class HealthServer {
  #endpoint: HttpEndpoint;
  #timer?: ReturnType<typeof setTimeout>;
  #client?: Deno.HttpClient;
  #probe?: Promise<void>;
  #abort = new AbortController();
  #closed = false;

  constructor(address: HttpAddress) {
    this.#endpoint = new HttpEndpoint(address, "health");
    this.#endpoint.route("/health", () => textResponse(200, "OK"));
    this.#schedule();
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#probe = this.#selfCheck().finally(() => {
        this.#probe = undefined;
        this.#schedule();
      });
    }, 1000);
  }

  async #selfCheck(): Promise<void> {
    const duration = histogram({
      name: "coredns_health_request_duration_seconds",
      help: "Histogram of the time (in seconds) each request took.",
      buckets: SLIM_TIME_BUCKETS,
    });
    const failures = counter({
      name: "coredns_health_request_failures_total",
      help: "The number of times the health check failed.",
    });
    const { host } = this.#endpoint.address;
    const target = host === "" ? "localhost" : host.includes(":") ? `[${host}]` : host;
    this.#client ??= Deno.createHttpClient({});
    const started = performance.now();
    try {
      const res = await fetch(`http://${target}:${this.#endpoint.port}/health`, {
        client: this.#client,
        signal: AbortSignal.any([this.#abort.signal, AbortSignal.timeout(1000)]),
      });
      await res.body?.cancel();
      if (res.status !== 200) throw new Error(`status ${res.status}`);
      duration.observe(undefined, (performance.now() - started) / 1000);
    } catch {
      if (!this.#closed) failures.inc();
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#abort.abort();
    await this.#probe;
    this.#client?.close();
    await this.#endpoint.close();
  }
}

/** Waits out the lameduck period when the server stops for good (not on a reload: CoreDNS's OnFinalShutdown). */
function lameduckHook(seconds: number, log: Logger): ShutdownHook {
  return async ({ final }) => {
    if (seconds <= 0 || !final) return;
    log.info(`Going into lameduck mode for ${formatGoDuration(seconds)}`);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  };
}

/** The health directive: `health [ADDRESS] { lameduck DURATION }`; no handler. */
export const healthPlugin: PluginDefinition = {
  name: "health",
  setup(ctx) {
    const config = parseHealth(ctx.directives);
    ctx.resources.acquire(`health:${config.address.text}`, () => new HealthServer(config.address));
    ctx.onShutdown(lameduckHook(config.lameduck, ctx.log));
    return null;
  },
};
