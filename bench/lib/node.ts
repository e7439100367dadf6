/**
 * The program under test, run as a user runs it:
 * `deno run -A main.ts -conf CORE -dns.port P -quiet`, with a Corefile the
 * benchmark writes. No `log` plugin (Knot logs no queries either).
 *
 * @module
 */

import type { Scope } from "./cleanup.ts";
import { type Proc, spawn } from "./proc.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** The `idetcd` directive of a node. */
export interface IdetcdBlock {
  endpoint: string;
  limit: number;
  address: string;
  identity: string;
  pattern?: string;
}

/** The `idetcd { ... }` block text. */
export function idetcdDirective(b: IdetcdBlock): string {
  return [
    "    idetcd {",
    `        endpoint ${b.endpoint}`,
    `        limit ${b.limit}`,
    `        pattern ${b.pattern ?? "worker{{.ID}}.tf.local."}`,
    `        address ${b.address}`,
    `        identity ${b.identity}`,
    "    }",
  ].join("\n");
}

/** An `etcd ZONES { endpoint ... }` block text. */
export function etcdDirective(zones: string[], endpoint: string): string {
  return [`    etcd ${zones.join(" ")} {`, `        endpoint ${endpoint}`, "    }"].join("\n");
}

/** A whole Corefile: one `.` block bound to `bind`, with the given directives. */
export function corefile(bind: string, ...directives: string[]): string {
  return [". {", `    bind ${bind}`, ...directives, "}", ""].join("\n");
}

/** The UDP path a node is started with (`-udp`); undefined: the program's default. */
export type UdpPath = "batched" | "portable";

/**
 * Writes `text` to `path` and spawns the node on `port` (which the Corefile's
 * `.` block uses), on the UDP path `udp` when given (else whatever the
 * program's default is now).
 */
export async function startNode(
  scope: Scope,
  path: string,
  text: string,
  port: number,
  udp?: UdpPath,
): Promise<Proc> {
  await Deno.writeTextFile(path, text);
  return spawn(scope, Deno.execPath(), [
    "run",
    "-A",
    MAIN,
    "-conf",
    path,
    "-dns.port",
    String(port),
    "-quiet",
    ...(udp ? ["-udp", udp] : []),
  ]);
}

/**
 * Writes `text` to `path` and spawns CoreDNS (`binary`, from COREDNS_BIN) on
 * `port` with it: the same command line as a node's, so both get one Corefile.
 */
export async function startCoreDNS(
  scope: Scope,
  binary: string,
  path: string,
  text: string,
  port: number,
): Promise<Proc> {
  await Deno.writeTextFile(path, text);
  return spawn(scope, binary, ["-conf", path, "-dns.port", String(port), "-quiet"]);
}

/** Matches the claim log line; group 1 is the name, group 2 the ID. */
export const CLAIMED = /claimed (\S+) \(ID (\d+)\)/;

/** The path of main.ts, for other invocations (`-version`). */
export const MAIN_PATH = MAIN;
