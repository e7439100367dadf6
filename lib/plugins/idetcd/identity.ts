/**
 * This node's sticky identity: what makes a restarted node get its old ID back.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { machineHostname } from "./host_identity.ts";
import type { IdetcdConfig } from "./setup.ts";

/** A short, non-reversible digest of /etc/machine-id (which must not be published as is). */
function machineDigest(): string | undefined {
  for (const path of ["/etc/machine-id", "/var/lib/dbus/machine-id"]) {
    try {
      const id = Deno.readTextFileSync(path).trim();
      if (id) return createHash("sha256").update(`idetcd:${id}`).digest("hex").slice(0, 16);
    } catch {
      // try the next
    }
  }
  return undefined;
}

/** This node's default identity: host name, machine-id digest and the advertised addresses. */
export function defaultIdentity(addresses: readonly string[]): string {
  let host = "";
  try {
    host = Deno.hostname();
  } catch {
    // no --allow-sys: the addresses still tell nodes apart
  }
  try {
    // While the `hostname` option presents the claimed name, the identity stays the machine's own.
    host = machineHostname(host, Deno.readTextFileSync("/etc/hosts"));
  } catch {
    // no hosts file, or no --allow-read: the hostname as it is
  }
  return `${host || "-"}/${machineDigest() ?? "-"}/${addresses.join(",")}`;
}

/** The identity `config` claims with, given the resolved addresses. */
export function identityOf(config: IdetcdConfig, addresses: readonly string[]): string {
  return config.identity ?? defaultIdentity(addresses);
}
