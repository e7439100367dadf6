/**
 * In-process idetcd claimers (the real {@link Claimer}), each with its own
 * etcd client unless one is given (the storm shares a hundred), released and
 * closed by the scope.
 *
 * @module
 */

import type { Etcd3 } from "etcd3";
import {
  Etcd3Kv,
  type EtcdKv,
  type GrantedLease,
  type TxnRequest,
  type TxnResult,
} from "../../lib/etcd/kv.ts";
import type { KeyValue } from "../../lib/etcd/types.ts";
import type { ZoneCopy } from "../../lib/etcd/mirror.ts";
import { createLogger, type Level } from "../../lib/log.ts";
import { Claimer } from "../../lib/plugins/idetcd/claim.ts";
import { parsePattern } from "../../lib/plugins/idetcd/pattern.ts";
import type { ZoneView } from "../../lib/plugins/idetcd/zone_view.ts";
import type { Scope } from "./cleanup.ts";
import { clientIn } from "./etcd.ts";

/** The pattern every benchmark node uses. */
export const PATTERN = "worker{{.ID}}.tf.local.";

/** Warnings and errors of the claimers go to stderr; INFO lines are dropped. */
const log = createLogger("bench claimer", (level: Level, line: string) => {
  if (level === "WARNING" || level === "ERROR") console.error(line);
});

/**
 * At most `limit` etcd calls in flight from this process, the rest queued
 * before their deadline starts. Thousands of claimers in one Deno process
 * would otherwise start thousands of gRPC calls in one tick, and those
 * queued behind the process's own CPU miss their deadlines and retry (a
 * collapse of the process, not of etcd); in a cluster each node is a process.
 */
export class CallGate {
  readonly #limit: number;
  #inFlight = 0;
  #queue: (() => void)[] = [];
  /** New claims (lease grants) wait behind the calls of claims already under way: a pipeline. */
  #later: (() => void)[] = [];

  /** A gate of `limit` calls in flight. */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Runs `call` once a slot is free; `later` calls only when no other call waits. */
  async run<T>(call: () => Promise<T>, later = false): Promise<T> {
    if (this.#inFlight >= this.#limit) {
      await new Promise<void>((resolve) => (later ? this.#later : this.#queue).push(resolve));
    } else {
      this.#inFlight++;
    }
    try {
      return await call();
    } finally {
      const next = this.#queue.shift() ?? this.#later.shift();
      if (next) next();
      else this.#inFlight--;
    }
  }
}

/** An {@link EtcdKv} whose calls pass a {@link CallGate}; counts them like Etcd3Kv. */
class GatedKv implements EtcdKv {
  readonly #kv: Etcd3Kv;
  readonly #gate: CallGate;

  constructor(kv: Etcd3Kv, gate: CallGate) {
    this.#kv = kv;
    this.#gate = gate;
  }

  get requests(): number {
    return this.#kv.requests;
  }

  txn(request: TxnRequest, timeoutMs?: number): Promise<TxnResult> {
    return this.#gate.run(() => this.#kv.txn(request, timeoutMs));
  }

  range(key: string, options?: { prefix?: boolean; timeoutMs?: number }): Promise<KeyValue[]> {
    return this.#gate.run(() => this.#kv.range(key, options));
  }

  grant(ttlSeconds: number, timeoutMs?: number): Promise<GrantedLease> {
    return this.#gate.run(() => this.#kv.grant(ttlSeconds, timeoutMs), true);
  }

  keepAlive(id: string, timeoutMs: number): Promise<number> {
    return this.#gate.run(() => this.#kv.keepAlive(id, timeoutMs));
  }

  revoke(id: string, timeoutMs?: number): Promise<void> {
    return this.#gate.run(() => this.#kv.revoke(id, timeoutMs));
  }
}

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
  /** Zone readings shared with the other claimers of the storm (same pattern and limit). */
  view?: ZoneView;
  /** Pass every etcd call through this gate (needs `zone`). */
  gate?: CallGate;
  /** Lease length, seconds (default 20). */
  leaseSeconds?: number;
}

/** A claimer whose release (revoking its lease) the scope runs, before closing its client. */
export function claimerIn(scope: Scope, spec: ClaimerSpec): Claimer {
  const client = spec.client ?? clientIn(scope, spec.endpoint);
  const claimer = new Claimer(
    spec.gate ? new GatedKv(new Etcd3Kv(client), spec.gate) : client,
    {
      pattern: parsePattern(PATTERN),
      limit: spec.limit,
      prefix: "/skydns",
      addresses: [spec.address],
      identity: spec.identity,
      leaseSeconds: spec.leaseSeconds ?? 20,
      connectTimeoutSeconds: 30,
      endpoints: spec.endpoint,
    },
    log,
    { zone: spec.zone, view: spec.view },
  );
  scope.defer(() => claimer.release());
  return claimer;
}
