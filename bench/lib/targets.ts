/**
 * The targets, each measured figure next to its target with the gap:
 * every section adds rows to the run's {@link Targets}, and the report prints
 * them as one table first.
 *
 * @module
 */

import { mb, ratio } from "./stats.ts";
import type { Table } from "./report.ts";

/** One target and what this run measured for it. */
export interface TargetRow {
  /** What is measured, e.g. "`cache` + `etcd`: idetcd (batched) / CoreDNS". */
  what: string;
  measured: string;
  target: string;
  /** "met", or how far off (and by what factor). */
  gap: string;
  /** undefined: not measured in this run (skipped). */
  met?: boolean;
}

/** The rows collected during one run (passed to every section in its Context). */
export class Targets {
  readonly rows: TargetRow[] = [];

  /** A ratio that should be at least `min`. */
  atLeast(what: string, value: number, min: number): void {
    if (!Number.isFinite(value)) return this.skipped(what, `≥ ${ratio(min)}`, "not measured");
    const met = value >= min;
    this.rows.push({
      what,
      measured: ratio(value),
      target: `≥ ${ratio(min)}`,
      gap: met ? "met" : `${ratio(value - min)} (×${(min / value).toFixed(2)} to go)`,
      met,
    });
  }

  /** A size in bytes that should be at most `max`. */
  atMostBytes(what: string, bytes: number, max: number): void {
    if (!Number.isFinite(bytes)) return this.skipped(what, `≤ ${mb(max)}`, "not measured");
    const met = bytes <= max;
    this.rows.push({
      what,
      measured: mb(bytes),
      target: `≤ ${mb(max)}`,
      gap: met ? "met" : `+${mb(bytes - max)} (×${(bytes / max).toFixed(2)})`,
      met,
    });
  }

  /** A target this run could not measure, and why (e.g. COREDNS_BIN unset). */
  skipped(what: string, target: string, why: string): void {
    this.rows.push({ what, measured: "skipped", target, gap: why });
  }

  /** The table of every row, or none when no section added one. */
  table(): Table | undefined {
    if (this.rows.length === 0) return undefined;
    const met = this.rows.filter((r) => r.met === true).length;
    const missed = this.rows.filter((r) => r.met === false).length;
    const skipped = this.rows.length - met - missed;
    return {
      title: "Targets (issue #12): every figure next to its target",
      header: ["figure", "measured", "target", "gap", ""],
      rows: this.rows.map((r) => [
        r.what,
        r.measured,
        r.target,
        r.gap,
        r.met === undefined ? "skipped" : r.met ? "met" : "missed",
      ]),
      notes: [
        `${met} met, ${missed} missed, ${skipped} skipped. Ratios are medians of per-round ratios ` +
        "from one interleaved run (section 1); sizes are VmRSS from /proc/PID/status in MB " +
        "(10^6 bytes). The sections below give every figure these come from.",
      ],
    };
  }
}
