/**
 * In-process idetcd claimers (the real {@link Claimer}), each with its own
 * etcd client unless one is given, released and closed by the scope; and the
 * claim storm both the benchmark and the claim tests run ({@link runStorm}):
 * many claimers at once on a few shared clients and one watch-fed copy.
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
import { Mirror, type ZoneCopy } from "../../lib/etcd/mirror.ts";
import { createLogger, type Level, type Logger } from "../../lib/log.ts";
import { type Claimed, Claimer } from "../../lib/plugins/idetcd/claim.ts";
import type { Clock } from "../../lib/plugins/idetcd/lease.ts";
import { parsePattern } from "../../lib/plugins/idetcd/pattern.ts";
import { ZoneView } from "../../lib/plugins/idetcd/zone_view.ts";
import { Scope } from "./cleanup.ts";
import { clientIn, etcdRequestCount, etcdSentBytes } from "./etcd.ts";

/** The pattern every benchmark node uses. */
export const PATTERN = "worker{{.ID}}.tf.local.";

/** Warnings and errors of the claimers go to stderr; INFO lines are dropped. */
const log = createLogger("bench claimer", (level: Level, line: string) => {
  if (level === "WARNING" || level === "ERROR") console.error(line);
});

/** The storm's shared copy's log lines are not the benchmark's. */
const quietLog = createLogger("bench zone", () => {});

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
  /** How long the first claim may go unanswered by etcd, seconds (default 30). */
  connectTimeoutSeconds?: number;
  /** The claimer's log (default: warnings and errors to stderr). */
  log?: Logger;
  /** The claimer's clock (default: the suspend-aware one a node uses). */
  clock?: Clock;
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
      connectTimeoutSeconds: spec.connectTimeoutSeconds ?? 30,
      endpoints: spec.endpoint,
    },
    spec.log ?? log,
    { zone: spec.zone, view: spec.view, clock: spec.clock },
  );
  scope.defer(() => claimer.release());
  return claimer;
}

/** What {@link runStorm} starts. */
export interface StormSpec {
  /** etcd's client URL; it should hold nothing under the zone yet. */
  endpoint: string;
  /** Claimers, all started at once; the pattern's limit is the same number. */
  claimers: number;
  /** etcd clients the claimers share (claimer i uses client i mod this). */
  clients: number;
  /** Lease length, seconds. */
  leaseSeconds: number;
  /** Pass every etcd call through a {@link CallGate} of this many calls in flight. */
  inFlight?: number;
  /** How long a first claim may go unanswered by etcd, seconds (default 30). */
  connectTimeoutSeconds?: number;
  /** Called every 10 s while claims are outstanding. */
  progress?: (claimed: number, elapsedMs: number) => void;
  /** Give the claimers the node's suspend-aware clock instead of {@link monotonicClock}. */
  nodeClock?: boolean;
}

/** What one storm measured. */
export interface StormResult {
  /** Each claimer's claim, in claimer order; undefined where it failed. */
  claims: (Claimed | undefined)[];
  /** Why claims failed (rejections), one entry per failed claimer. */
  failures: string[];
  /** etcd requests each claimer made until its claim resolved, retries included. */
  requests: number[];
  /** Steps the claimers retried after an etcd error, all together. */
  retries: number;
  /**
   * The first error each retrying claimer met, by kind (numbers blanked), most
   * frequent first (a claimer warns once while starting, however often it retries).
   */
  retryReasons: [string, number][];
  lostRaces: number;
  /** Zone listings read from etcd because the copy lagged. */
  directReads: number;
  /** Zone readings the shared view computed. */
  readings: number;
  /** Bytes etcd sent to gRPC clients over the storm (responses and watch events). */
  bytesSent: number;
  /** gRPC messages etcd received over the storm. */
  serverRequests: number;
  /** From the start to the last claim, ms. */
  elapsedMs: number;
  /** Locks etcd holds for the pattern after the storm. */
  locks: number;
  /** Releasing every claimer at once afterwards, ms. */
  releaseMs: number;
}

/**
 * performance.now() with real timers, for the in-process storm: a node's
 * suspend-aware clock reads /proc/uptime on every reading, and each held
 * lease's watchdog reads it every 200 ms, so 10,000 claimers in one process
 * would read that file 50,000 times a second (the cost of 10,000 nodes' clocks
 * on one process's two cores, not of the claim). Nothing here suspends.
 */
export const monotonicClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms) as unknown as number,
  clearTimeout: (handle) => clearTimeout(handle),
};

/** An address for claimer `i` (0-based), distinct for up to 15 million claimers. */
function stormAddress(i: number): string {
  const n = i + 1;
  return `10.${Math.floor(n / 62_500)}.${Math.floor(n / 250) % 250}.${(n % 250) + 1}`;
}

/** The part of a claimer's retry warning that says what failed, without numbers. */
function retryKind(line: string): string | undefined {
  const m = /(?:claiming|checking) a name failed: (.*?); retrying/.exec(line);
  return m?.[1].replace(/\d+(\.\d+)?/g, "N").slice(0, 160);
}

/**
 * `spec.claimers` real {@link Claimer}s in this process, started at once on
 * `spec.clients` shared etcd clients and one watch-fed copy of the zone with
 * shared readings (as a node's claim reads its DNS copy). A claim that meets
 * an etcd error is retried by the Claimer itself, as a node's is; requests
 * and bytes count those retries. Every claimer is released (all at once)
 * before it returns.
 */
export async function runStorm(spec: StormSpec): Promise<StormResult> {
  await using scope = new Scope();
  const n = spec.claimers;
  const zone = new Mirror(clientIn(scope, spec.endpoint), "/skydns/local/tf/", quietLog, {
    trackLeases: false,
  });
  scope.defer(() => zone.close());
  await zone.start();
  const clients = Array.from(
    { length: Math.min(n, spec.clients) },
    () => clientIn(scope, spec.endpoint),
  );
  const view = new ZoneView(zone, "/skydns/local/tf", parsePattern(PATTERN), n);
  const gate = spec.inFlight ? new CallGate(spec.inFlight) : undefined;
  const reasons = new Map<string, number>();
  const claimLog = createLogger("bench claimer", (level: Level, line: string) => {
    const kind = retryKind(line);
    if (kind !== undefined) reasons.set(kind, (reasons.get(kind) ?? 0) + 1);
    else if (level === "ERROR") console.error(line);
  });
  const claimers = Array.from({ length: n }, (_, i) =>
    claimerIn(scope, {
      endpoint: spec.endpoint,
      identity: `storm-${i + 1}`,
      address: stormAddress(i),
      limit: n,
      client: clients[i % clients.length],
      zone,
      view,
      gate,
      leaseSeconds: spec.leaseSeconds,
      connectTimeoutSeconds: spec.connectTimeoutSeconds,
      log: claimLog,
      clock: spec.nodeClock ? undefined : monotonicClock,
    }));
  // Every client's KV and Lease channels connected first: the storm measures claims, not
  // a hundred connection set-ups racing thousands of queued calls.
  await Promise.all(clients.map(async (c) => {
    await c.get("/bench/warm-up").string();
    const warm = await c.leaseClient.leaseGrant({ TTL: 5, ID: 0 });
    await c.leaseClient.leaseRevoke({ ID: warm.ID });
  }));
  const requestsBefore = await etcdRequestCount(spec.endpoint);
  const bytesBefore = await etcdSentBytes(spec.endpoint);
  const started = performance.now();
  let last = started;
  let done = 0;
  const ticker = setInterval(() => spec.progress?.(done, performance.now() - started), 10_000);
  // Each claimer's requests when its claim resolved: keep-alives of claims made early in a
  // long storm are the lease's cost, not the claim's.
  const requests: number[] = new Array(n).fill(0);
  const settled = await Promise.allSettled(claimers.map(async (c, i) => {
    try {
      const claimed = await c.claim();
      last = Math.max(last, performance.now());
      done++;
      return claimed;
    } finally {
      requests[i] = c.stats.requests;
    }
  })).finally(() => clearInterval(ticker));
  const bytesSent = (await etcdSentBytes(spec.endpoint)) - bytesBefore;
  const serverRequests = (await etcdRequestCount(spec.endpoint)) - requestsBefore;
  const locks = (await clients[0].getAll().prefix("/skydns/local/tf/worker").keys())
    .filter((k) => /^\/skydns\/local\/tf\/worker\d+$/.test(k)).length;
  const stats = claimers.map((c) => c.stats);
  // All at once: the scope would release them one after the other (minutes at 10,000).
  const releaseStarted = performance.now();
  await Promise.all(claimers.map((c) => c.release()));
  const releaseMs = performance.now() - releaseStarted;
  return {
    claims: settled.map((r) => r.status === "fulfilled" ? r.value : undefined),
    failures: settled.flatMap((r) => r.status === "rejected" ? [String(r.reason)] : []),
    requests,
    retries: stats.reduce((sum, s) => sum + s.retries, 0),
    retryReasons: [...reasons.entries()].sort((a, b) => b[1] - a[1]),
    lostRaces: stats.reduce((sum, s) => sum + s.lostRaces, 0),
    directReads: stats.reduce((sum, s) => sum + s.directReads, 0),
    readings: view.readings,
    bytesSent,
    serverRequests,
    elapsedMs: last - started,
    locks,
    releaseMs,
  };
}
