/**
 * In-process idetcd claimers (the real {@link Claimer}), each with its own
 * etcd client unless one is given, released and closed by the scope.
 *
 * @module
 */

import type { Etcd3 } from "etcd3";
import type { ZoneCopy } from "../../lib/etcd/mirror.ts";
import { createLogger, type Level } from "../../lib/log.ts";
import { Claimer } from "../../lib/plugins/idetcd/claim.ts";
import { parsePattern } from "../../lib/plugins/idetcd/pattern.ts";
import type { Scope } from "./cleanup.ts";
import { clientIn } from "./etcd.ts";

/** The pattern every benchmark node uses. */
export const PATTERN = "worker{{.ID}}.tf.local.";

/** Warnings and errors of the claimers go to stderr; INFO lines are dropped. */
const log = createLogger("bench claimer", (level: Level, line: string) => {
  if (level === "WARNING" || level === "ERROR") console.error(line);
});

/** Options for {@link claimerIn}. */
export interface ClaimerSpec {
  endpoint: string;
  identity: string;
  address: string;
  limit: number;
  /** Share this client instead of opening one. */
  client?: Etcd3;
  /**
   * The zone's watch-fed copy the claimer judges its lock by (a node shares the
   * one its DNS answers from); without it each claimer keeps its own.
   */
  zone?: ZoneCopy;
}

/** A claimer whose release (revoking its lease) the scope runs, before closing its client. */
export function claimerIn(scope: Scope, spec: ClaimerSpec): Claimer {
  const client = spec.client ?? clientIn(scope, spec.endpoint);
  const claimer = new Claimer(
    client,
    {
      pattern: parsePattern(PATTERN),
      limit: spec.limit,
      prefix: "/skydns",
      addresses: [spec.address],
      identity: spec.identity,
      leaseSeconds: 20,
      connectTimeoutSeconds: 30,
      endpoints: spec.endpoint,
    },
    log,
    { zone: spec.zone },
  );
  scope.defer(() => claimer.release());
  return claimer;
}
