/**
 * The claim's Prometheus metrics: idetcd_claimed_id, idetcd_lease_state and
 * the claim counters of one node.
 *
 * @module
 */

import type { MetricFamily } from "../../server/metrics.ts";
import type { Claimer } from "./claim.ts";
import type { IdetcdConfig } from "./setup.ts";

/** The metric families of one node's claim. */
export function claimMetrics(config: IdetcdConfig, claimer: Claimer): MetricFamily[] {
  const labels = { pattern: config.pattern.source };
  const held = claimer.current();
  const stats = claimer.stats;
  const family = (
    name: string,
    help: string,
    type: MetricFamily["type"],
    value: number,
  ): MetricFamily => ({ name, help, type, samples: [{ labels, value }] });
  return [
    family(
      "idetcd_claimed_id",
      "The ID this node holds (0 while it holds none).",
      "gauge",
      held?.id ?? 0,
    ),
    family(
      "idetcd_lease_state",
      "1 while this node holds its name under a live lease.",
      "gauge",
      held ? 1 : 0,
    ),
    family(
      "idetcd_claims_total",
      "Names claimed (the first claim and re-claims).",
      "counter",
      stats.claims,
    ),
    family(
      "idetcd_name_losses_total",
      "Times the held name was lost or stopped being vouched for while running.",
      "counter",
      stats.losses,
    ),
    family(
      "idetcd_claim_lost_races_total",
      "Claim transactions that lost a race.",
      "counter",
      stats.lostRaces,
    ),
    family(
      "idetcd_etcd_requests_total",
      "etcd requests made by the claim.",
      "counter",
      stats.requests,
    ),
  ];
}
