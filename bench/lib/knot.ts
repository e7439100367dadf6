/**
 * Knot DNS serving the same records as idetcd, as zone files: the reference
 * the throughput is compared with. The configuration comes from
 * bench/knot/knot.conf.template, filled in a temp dir.
 *
 * @module
 */

import type { Scope } from "./cleanup.ts";
import type { Probe } from "./dns.ts";
import { type Proc, spawn } from "./proc.ts";

/** One record of a zone file, relative to the zone's origin or absolute. */
export interface ZoneRecord {
  name: string;
  ttl: number;
  type: "A" | "AAAA" | "SRV" | "NS";
  data: string;
}

/** A zone: origin (fully qualified) and records besides SOA and NS. */
export interface Zone {
  origin: string;
  records: ZoneRecord[];
  /** TTL of the apex records and SOA minimum (negative TTL). */
  ttl: number;
}

/** The zone file text; SOA and NS mirror idetcd's (`ns.dns.ZONE`, `hostmaster.ZONE`). */
export function zoneFile(zone: Zone): string {
  const o = zone.origin;
  const lines = [
    `$ORIGIN ${o}`,
    `@ ${zone.ttl} IN SOA ns.dns.${o} hostmaster.${o} 1 7200 1800 86400 ${zone.ttl}`,
    `@ ${zone.ttl} IN NS ns.dns.${o}`,
    `ns.dns ${zone.ttl} IN A 127.0.0.1`,
    ...zone.records.map((r) => `${r.name} ${r.ttl} IN ${r.type} ${r.data}`),
  ];
  return lines.join("\n") + "\n";
}

/** A running knotd. */
export interface Knot {
  readonly port: number;
  readonly proc: Proc;
}

/**
 * Writes the configuration and zone files into `dir`, starts `knotd` in the
 * foreground on 127.0.0.1:`port`, and waits until `probe` gets an answer for
 * the first zone's SOA.
 */
export async function startKnot(
  scope: Scope,
  knotd: string,
  dir: string,
  port: number,
  zones: Zone[],
  probe: Probe,
): Promise<Knot> {
  for (const sub of ["run", "db", "zones"]) await Deno.mkdir(`${dir}/${sub}`, { recursive: true });
  for (const zone of zones) {
    await Deno.writeTextFile(`${dir}/zones/${zone.origin}zone`, zoneFile(zone));
  }
  const template = await Deno.readTextFile(
    new URL("../knot/knot.conf.template", import.meta.url),
  );
  const conf = template
    .replaceAll("{{DIR}}", dir)
    .replaceAll("{{PORT}}", String(port))
    // As root, knotd would switch to the "knot" user, which cannot read a temp dir
    // (and may not exist in a container): stay root.
    .replace("{{USER}}", Deno.uid() === 0 ? "    user: root:root" : "")
    .replace(
      "{{ZONES}}",
      zones.map((z) => `  - domain: ${z.origin}\n    file: "${z.origin}zone"`).join("\n"),
    );
  await Deno.writeTextFile(`${dir}/knot.conf`, conf);
  const proc = spawn(scope, knotd, ["-c", `${dir}/knot.conf`]);
  const deadline = performance.now() + 20_000;
  while (true) {
    if (proc.hasExited) throw new Error(`knotd exited during start:\n${proc.output()}`);
    const reply = await probe.query(zones[0].origin, 6, 200);
    if (reply && reply.rcode === 0 && reply.answer.length > 0) break;
    if (performance.now() > deadline) {
      throw new Error(`knotd did not answer within 20 s:\n${proc.output()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, proc };
}
