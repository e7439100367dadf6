/**
 * What every section of the benchmark gets: the mode, sizes and durations,
 * the tools, a temp dir, and a progress log.
 *
 * @module
 */

import type { LoadShape } from "./dnsperf.ts";
import type { Targets } from "./targets.ts";
import type { ToolPaths } from "./tools.ts";

/** Sizes and durations of one run. */
export interface Settings {
  /** dnsperf seconds per throughput run. */
  seconds: number;
  /** Interleaved rounds per workload and server (the median is reported). */
  rounds: number;
  /** dnsperf seconds of the warm-up run per server (JIT, caches); 0: none. */
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
  /** Seconds to wait after the scale records are deleted before reading RSS (GC). */
  scaleSettleSeconds: number;
  /** Seconds before each RSS reading of the memory section (a collection that is due can run). */
  memorySettleSeconds: number;
  /** Junk datagrams of the memory section's flood. */
  floodPackets: number;
  /** Queries for random (non-existent) names in the memory section. */
  randomQueries: number;
}

/** The full run: a few minutes. */
export const FULL: Settings = {
  seconds: 5,
  rounds: 3,
  warmupSeconds: 2,
  // The load: one client socket, 100 in flight, one sender thread.
  shape: { clients: 1, outstanding: 100 },
  stormClaimers: 200,
  stormProcesses: 20,
  propagationPuts: 200,
  propagationClaims: 100,
  // 10 records: the baseline of a node with (almost) nothing in its copy.
  scaleSizes: [10, 10_000, 100_000],
  scaleSeconds: 5,
  scaleSettleSeconds: 5,
  memorySettleSeconds: 2,
  floodPackets: 100_000,
  randomQueries: 1_000_000,
};

/** `--quick`: the CI smoke, well under a minute; the figures mean little. */
export const QUICK: Settings = {
  seconds: 0.5,
  rounds: 1,
  warmupSeconds: 0,
  shape: { clients: 1, outstanding: 100 },
  stormClaimers: 20,
  stormProcesses: 3,
  propagationPuts: 20,
  propagationClaims: 10,
  scaleSizes: [1_000],
  scaleSeconds: 1,
  scaleSettleSeconds: 1,
  memorySettleSeconds: 0.5,
  floodPackets: 2_000,
  randomQueries: 5_000,
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
  /** Where sections put each figure that has a target in the issue. */
  targets: Targets;
}
