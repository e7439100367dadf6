/**
 * Reads the `prometheus` directive: `prometheus [ADDRESS] { runtime_metrics }`.
 *
 * @module
 */

import { argError, CorefileError, type Directive } from "../../corefile/types.ts";
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
  if (directives.length > 1) {
    throw new CorefileError(
      "this plugin can only be used once per Server Block",
      directives[1].name,
      "prometheus",
    );
  }
  const d = directives[0];
  if (d.args.length > 1) throw argError(d.args[1], "prometheus");
  const address = parseHttpAddress(
    d.args[0]?.text ?? DEFAULT_METRICS_ADDRESS,
    d.args[0],
    "prometheus",
  );
  let runtimeMetrics = false;
  for (const line of d.block ?? []) {
    const option = line.name.text;
    if (option === "runtime_metrics") {
      if (line.args.length) throw argError(line.args[0], "prometheus");
      runtimeMetrics = true;
    } else if (option === "tls") {
      throw new CorefileError(
        "tls is not supported by idetcd; serve /metrics over plain HTTP",
        line.name,
        "prometheus",
      );
    } else {
      throw new CorefileError(`unknown option: ${option}`, line.name, "prometheus");
    }
  }
  return { address, runtimeMetrics };
}
