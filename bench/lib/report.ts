/**
 * The results as Markdown: a header (command, date, machine) and one table
 * per measurement.
 *
 * @module
 */

import type { Machine } from "./tools.ts";

/** One results table. */
export interface Table {
  title: string;
  header: string[];
  rows: string[][];
  /** Lines printed under the table (settings, caveats). */
  notes?: string[];
}

/** Everything one run reports. */
export interface Report {
  command: string;
  date: string;
  machine: Machine;
  tables: Table[];
  /** Sections that failed, with their error. */
  failures: string[];
  /** Extra Markdown appended at the end (raw numbers). */
  appendix?: string[];
  /** The 1-minute load average at the start and at the end (other jobs on the machine). */
  load?: { start: string; end: string };
}

/** A Markdown table with padded columns (as `deno fmt` would lay it out). */
export function markdownTable(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    "| " + cells.map((c, i) => (c ?? "").padEnd(widths[i])).join(" | ") + " |";
  return [
    line(header),
    "| " + widths.map((w) => "-".repeat(w)).join(" | ") + " |",
    ...rows.map(line),
  ]
    .join("\n");
}

/** The whole report. */
export function renderReport(report: Report): string {
  const m = report.machine;
  const out = [
    "# idetcd benchmark results",
    "",
    `Produced by \`${report.command}\` on ${report.date}.`,
    "",
    `Machine: ${m.cpus} CPUs (${m.model}), ${m.memory} RAM, ${m.kernel}; Deno ${m.deno}, ` +
    `Knot ${m.knot}, dnsperf ${m.dnsperf}, etcd ${m.etcd}` +
    (m.coredns
      ? `, CoreDNS ${m.coredns} (COREDNS_BIN)`
      : "; CoreDNS: COREDNS_BIN unset, its runs skipped") +
    `. idetcd's default UDP path (no \`-udp\`): ${m.defaultUdp}.`,
    "",
    ...(report.load
      ? [
        `Load average (1 min, from /proc/loadavg) at the start: ${report.load.start}, at the end: ` +
        `${report.load.end} (${m.cpus} CPUs; above that, other jobs were waiting for them too).`,
        "",
      ]
      : []),
  ];
  for (const table of report.tables) {
    out.push(`## ${table.title}`, "", markdownTable(table.header, table.rows), "");
    if (table.notes?.length) out.push(...table.notes, "");
  }
  if (report.failures.length > 0) {
    out.push("## Failures", "", ...report.failures.map((f) => `- ${f}`), "");
  }
  if (report.appendix?.length) out.push(...report.appendix, "");
  return out.join("\n");
}
