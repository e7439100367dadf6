/**
 * The identity of a claim configuration: the settings that decide what is
 * written to etcd. Equal keys share one claim (across Corefile reloads) and
 * one runtime state file (runtime.ts).
 *
 * @module
 */

import { canonicalJson } from "../../etcd/pool.ts";
import type { IdetcdConfig } from "./setup.ts";

/** The resource key of a claim: everything that decides what is written to etcd. */
export function claimKey(config: IdetcdConfig): string {
  return `idetcd-claim ${
    canonicalJson({
      etcd: config.etcd,
      configDir: config.configDir,
      prefix: config.prefix,
      pattern: config.pattern.source,
      limit: config.limit,
      address: config.addressSpecs,
      identity: config.identity,
      lease: config.leaseSeconds,
      margin: config.fenceMarginMs,
      port: config.port,
      wait: config.wait,
      roles: config.roles.roles,
      claimRole: config.claimRole,
      hostname: config.hostname,
      file: config.file,
    })
  }`;
}
