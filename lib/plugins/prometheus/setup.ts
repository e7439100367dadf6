/**
 * Reads the `prometheus` directive: `prometheus [ADDRESS] { runtime_metrics }`.
 *
 * @module
 */

import { onlyOnce } from "../../corefile/dispenser.ts";
import type { Directive, Token } from "../../corefile/types.ts";
import { type HttpAddress, parseHttpAddress } from "../health/http.ts";

/** CoreDNS's default metrics address. */
export const DEFAULT_METRICS_ADDRESS = "localhost:9153";

/** A parsed `prometheus` directive. */
export interface PrometheusConfig {
  /** Where /metrics is served. */
  address: HttpAddress;
  /** `runtime_metrics`: add process and runtime figures. */
  runtimeMetrics: boolean;
}

/** Reads `prometheus [ADDRESS] { runtime_metrics }` (once per block). */
export function parsePrometheus(directives: Directive[]): PrometheusConfig {
  const d = onlyOnce("prometheus", directives);
  let at: Token | undefined;
  if (d.nextArg()) {
    at = d.token();
    if (d.nextArg()) throw d.argErr();
  }
  const address = parseHttpAddress(at?.text ?? DEFAULT_METRICS_ADDRESS, at, "prometheus");
  let runtimeMetrics = false;
  for (const line of d.blockLines()) {
    const option = line.name.text;
    if (option === "runtime_metrics") {
      if (line.nextArg()) throw line.argErr();
      runtimeMetrics = true;
    } else if (option === "tls") {
      throw line.err("tls is not supported by idetcd; serve /metrics over plain HTTP", line.name);
    } else {
      throw line.err(`unknown option: ${option}`, line.name);
    }
  }
  return { address, runtimeMetrics };
}
