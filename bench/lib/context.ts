/**
 * What every section of the benchmark gets: the mode, sizes and durations,
 * the tools, a temp dir, and a progress log.
 *
 * @module
 */

import type { LoadShape } from "./dnsperf.ts";
import type { ToolPaths } from "./tools.ts";

/** Sizes and durations of one run. */
export interface Settings {
  /** dnsperf seconds per throughput run. */
  seconds: number;
  /** Interleaved rounds per workload and server (the median is reported). */
  rounds: number;
  /** dnsperf seconds of the warm-up run per server (JIT, caches). */
  warmupSeconds: number;
  shape: LoadShape;
  /** Claimers in one process in the claim storm. */
  stormClaimers: number;
  /** Node processes in the claim storm. */
  stormProcesses: number;
  /** Propagation samples: skydns puts, then claims. */
  propagationPuts: number;
  propagationClaims: number;
  /** Record counts of the scale runs. */
  scaleSizes: number[];
  /** dnsperf seconds per scale run. */
  scaleSeconds: number;
}

/** The full run: a few minutes. */
export const FULL: Settings = {
  seconds: 5,
  rounds: 3,
  warmupSeconds: 2,
  shape: { clients: 8, outstanding: 100 },
  stormClaimers: 200,
  stormProcesses: 20,
  propagationPuts: 200,
  propagationClaims: 100,
  // 10 records: the baseline of a node with (almost) nothing in its copy.
  scaleSizes: [10, 10_000, 100_000],
  scaleSeconds: 5,
};

/** `--quick`: the CI smoke, well under a minute; the figures mean little. */
export const QUICK: Settings = {
  seconds: 1,
  rounds: 1,
  warmupSeconds: 1,
  shape: { clients: 8, outstanding: 100 },
  stormClaimers: 20,
  stormProcesses: 3,
  propagationPuts: 20,
  propagationClaims: 10,
  scaleSizes: [1_000],
  scaleSeconds: 1,
};

/** Passed to every section. */
export interface Context {
  settings: Settings;
  quick: boolean;
  tools: ToolPaths;
  /** A temp dir for this run (removed at exit). */
  tmp: string;
  /** Progress on stderr. */
  log(message: string): void;
}
