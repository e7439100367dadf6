/**
 * The claim driver: takes the first free name of the pattern in etcd
 * atomically and holds it for as long as the node lives. It is the one place
 * that changes the node's "held / not held" state, as an explicit state
 * machine fed by events from the lease keeper (lease.ts) and the ownership
 * monitor (ownership.ts); the transactions it sends are built by txns.ts.
 *
 *     starting  --claim txn-->                         held
 *     held      --deadline - margin, no keep-alive-->  fenced     (not vouching)
 *     fenced    --keep-alive answered, lock ours-->    held
 *     held, fenced --lease gone / lock lost-->         claiming   (same ID first)
 *     claiming  --claim txn-->                         held
 *     claiming  --all taken-->                         waiting    (a freed slot wakes it)
 *     any       --release / superseded / failed-->     stopped
 *
 * A claim: grant a lease; one txn joins the zone's queue (a put, nothing
 * read); the zone is then read from its watch-fed copy once the copy has
 * reached that put (zone_view.ts: O(1) bytes from etcd per claim, whatever
 * the cluster's size); a lock carrying our identity is taken over (txn on its mod_revision, the
 * earlier lease revoked only after the new claim is written); else the ID the
 * queue assigns (claimers in create_revision order each take their first free
 * preference, else the lowest free ID) is claimed with
 * `txn(create_revision(lock) == 0)`; a lost race looks again once the copy
 * shows the lock that won. An uncontended claim is three requests. While etcd
 * refuses writes (NOSPACE) a restarted node adopts the lease its earlier
 * instance still keeps alive instead of losing the name.
 *
 * The driver never throws after the first claim: etcd errors are logged and
 * retried. {@link Claimer.current} is the name only while it is vouched for.
 *
 * @module
 */

import { Etcd3 } from "etcd3";
import {
  classifyFailure,
  Etcd3Kv,
  type EtcdKv,
  type GrantedLease,
  type TxnRequest,
  type TxnResult,
} from "../../etcd/kv.ts";
import type { KeyValue } from "../../etcd/types.ts";
import { Mirror, type ZoneCopy } from "../../etcd/mirror.ts";
import type { Logger } from "../../log.ts";
import {
  type Clock,
  defaultMarginMs,
  type HeldLease,
  LeaseKeeper,
  oneLine,
  suspendAwareClock,
} from "./lease.ts";
import { judgeOwnership, OwnershipMonitor } from "./ownership.ts";
import type { NamePattern } from "./pattern.ts";
import type { RoleMap } from "./roles.ts";
import { decodeLock, namePath, queueKey } from "./records.ts";
import { type ClaimSubject, claimTxn, joinQueue, readZone, releaseTxn, repairTxn } from "./txns.ts";
import { type ZoneReading, ZoneView } from "./zone_view.ts";

/** What the claimer needs to know. */
export interface ClaimOptions {
  /** The name pattern (`worker{{.ID}}.tf.local.`) whose IDs are claimed. */
  pattern: NamePattern;
  /** Highest ID. */
  limit: number;
  /** etcd key prefix ("/skydns"). */
  prefix: string;
  /** Addresses to publish (resolved IPs). */
  addresses: string[];
  /** Service port stored with the addresses (SRV). */
  port?: number;
  /** Sticky identity of this node. */
  identity: string;
  /** Lease length in seconds. */
  leaseSeconds: number;
  /** How long before the lease's local deadline the node stops vouching, ms (default {@link defaultMarginMs}). */
  marginMs?: number;
  /** Wait for a free slot instead of failing; without timeoutSeconds, forever. */
  wait?: { timeoutSeconds?: number };
  /** An ID this node held before (e.g. from its state file), tried first when free. */
  preferredId?: number;
  /**
   * How long the first claim retries while etcd does not answer it (seconds,
   * default 15; with `wait`, the wait timeout), counted from its last answer:
   * an overloaded etcd that answers some calls and times out others (a
   * thousand nodes starting at once) is retried, not given up on.
   */
  connectTimeoutSeconds?: number;
  /** The endpoints, for messages. */
  endpoints?: string;
  /** The Corefile's roles (named ranges of IDs). */
  roles?: RoleMap;
  /** Claim only an ID of this role; undefined: any free ID. */
  role?: string;
}

/** What the claimer runs on besides etcd (injected by unit tests, shared by the plugin). */
export interface ClaimDeps {
  /** The zone's watch-fed copy; without it the claimer keeps its own (needs an Etcd3 client). */
  zone?: ZoneCopy;
  /**
   * Readings of that copy shared with other claimers of the same pattern,
   * limit and roles in this process (the benchmark's storm); without it the
   * claimer has its own.
   */
  view?: ZoneView;
  /** The local monotonic clock the lease deadline is kept on; the process's by default (tests inject one). */
  clock?: Clock;
}

/** A name this node holds. */
export interface Claimed {
  /** The ID held (the `{{.ID}}` of the pattern). */
  id: number;
  /** Lower-case, fully qualified ("worker4.tf.local."). */
  name: string;
  /** The lock key in etcd. */
  key: string;
  /** The addresses published for the name (A and AAAA records). */
  addresses: string[];
  /** The service port published in SRV answers, when the Corefile sets one. */
  port?: number;
  /** This node's identity, written in the lock (what `whoami` and exec find it by). */
  identity: string;
  /** The lease holding every record (decimal). */
  leaseId: string;
  /** The lease length etcd granted, seconds. */
  leaseSeconds: number;
  /** The lock's create_revision: together with the lease, proof of ownership; grows with every new claim (a fencing token). */
  createRevision: number;
  /** The revision the claim (or take-over) was written at: the copy must reach it before it can judge. */
  revision: number;
  /** ISO 8601 time of the claim. */
  claimedAt: string;
}

/** The driver's state; only the driver changes it. */
export type ClaimState =
  | { kind: "starting" }
  | { kind: "claiming"; reason: string }
  | { kind: "waiting"; reason: string }
  | { kind: "held"; claimed: Claimed }
  | { kind: "fenced"; claimed: Claimed; reason: string }
  | { kind: "stopped"; reason: string };

/** Called when the held name changes: a new claim, a loss (undefined), a release. */
export type ClaimListener = (current: Claimed | undefined, reason: string) => void;

/** A claim that cannot be made; the message is one line meant for the user. */
export class ClaimError extends Error {
  /** Creates the error with its one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "ClaimError";
  }
}

/** Counters for tests and metrics. */
export interface ClaimStats {
  /** etcd requests made (grant, range, txn, keepalive, revoke). */
  requests: number;
  /** Claim transactions that lost a race. */
  lostRaces: number;
  /** Names claimed (first claim and re-claims). */
  claims: number;
  /** Names lost while running (fenced or lost). */
  losses: number;
  /**
   * Zone listings this claimer read from etcd because the copy lagged
   * (normally 0; claimers sharing a view share listings).
   */
  directReads: number;
  /** Steps retried after an etcd error (timed out, unavailable, refused). */
  retries: number;
}

type Attempt =
  | { kind: "claimed"; claimed: Claimed; how: string }
  | { kind: "full" }
  | { kind: "superseded"; id: number };

/** Events the driver waits for, most urgent first. */
type EventKind = "stop" | "gone" | "expiring" | "renewed" | "copy" | "slot";
const EVENT_ORDER: EventKind[] = ["stop", "gone", "expiring", "renewed", "copy", "slot"];

/** Longest pause after a lost race, ms. */
const JITTER_MAX_MS = 200;
/** Longest pause between failed attempts: a healed etcd is used within about a second. */
const MAX_BACKOFF_MS = 1_000;
const DEFAULT_CONNECT_TIMEOUT_S = 15;
/**
 * How long a claimer waits for the zone's copy to reach its queue entry (or a
 * race's winner) before it lists the zone from etcd instead, ms.
 */
const COPY_PATIENCE_MS = 5_000;
/** Deadline of the release transaction and revoke at shutdown, ms each. */
const RELEASE_TIMEOUT_MS = 2_000;

/**
 * etcd errors that say it is there but busy (it answered, just not yet with
 * a result): a sign of life like an answer.
 */
const BUSY_ANSWER = /etcdserver: (too many requests|request timed out|leader changed|no leader)/i;

/**
 * An {@link EtcdKv} that notes when etcd last answered one of the claim's own
 * calls (grant, txn, range). Keep-alives do not count: a lease kept alive
 * while every claim write is refused is no progress of the claim.
 */
class AnsweredKv implements EtcdKv {
  readonly #kv: EtcdKv & { requests?: number };
  readonly #answered: () => void;

  constructor(kv: EtcdKv & { requests?: number }, answered: () => void) {
    this.#kv = kv;
    this.#answered = answered;
  }

  get requests(): number | undefined {
    return this.#kv.requests;
  }

  async #noting<T>(call: Promise<T>): Promise<T> {
    try {
      const result = await call;
      this.#answered();
      return result;
    } catch (err) {
      if (BUSY_ANSWER.test(err instanceof Error ? err.message : String(err))) this.#answered();
      throw err;
    }
  }

  txn(request: TxnRequest, timeoutMs?: number): Promise<TxnResult> {
    return this.#noting(this.#kv.txn(request, timeoutMs));
  }

  range(key: string, options?: { prefix?: boolean; timeoutMs?: number }): Promise<KeyValue[]> {
    return this.#noting(this.#kv.range(key, options));
  }

  grant(ttlSeconds: number, timeoutMs?: number): Promise<GrantedLease> {
    return this.#noting(this.#kv.grant(ttlSeconds, timeoutMs));
  }

  keepAlive(id: string, timeoutMs: number): Promise<number> {
    return this.#kv.keepAlive(id, timeoutMs);
  }

  revoke(id: string, timeoutMs?: number): Promise<void> {
    return this.#kv.revoke(id, timeoutMs);
  }
}

/** Claims and holds one name of a pattern; see the module doc. */
export class Claimer {
  readonly #kv: EtcdKv & { requests?: number };
  readonly #options: ClaimOptions;
  readonly #subject: ClaimSubject;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #zonePath: string;
  readonly #zone: ZoneCopy;
  /** Set when the claimer made its own copy (closed on release). */
  readonly #ownZone?: Mirror;
  readonly #keeper: LeaseKeeper;
  #monitor?: OwnershipMonitor;

  #state: ClaimState = { kind: "starting" };
  #stateChanges = 0;
  #pending = new Map<EventKind, string | undefined>();
  #wake?: () => void;
  #lastId?: number;
  #warnedFull = false;
  #first = Promise.withResolvers<Claimed>();
  #loop?: Promise<void>;
  #releasing?: Promise<void>;
  #stopRequested = false;
  #listeners = new Set<ClaimListener>();
  #stateListeners = new Set<(state: ClaimState) => void>();
  #stats = { lostRaces: 0, claims: 0, losses: 0, directReads: 0, retries: 0 };
  /** Clock time etcd last answered one of the claim's calls (see {@link AnsweredKv}). */
  #answeredAt = 0;
  readonly #view: ZoneView;
  /** Aborted at release: cuts short a wait for the copy. */
  readonly #abort = new AbortController();

  /** Creates an idle claimer; nothing happens until {@link Claimer.claim}. */
  constructor(client: Etcd3 | EtcdKv, options: ClaimOptions, log: Logger, deps: ClaimDeps = {}) {
    if (options.addresses.length === 0) throw new Error("idetcd: no address to advertise");
    this.#kv = new AnsweredKv(
      client instanceof Etcd3 ? new Etcd3Kv(client) : client,
      () => this.#answeredAt = this.#clock.now(),
    );
    this.#options = options;
    this.#subject = {
      pattern: options.pattern,
      prefix: options.prefix,
      identity: options.identity,
      addresses: options.addresses,
      port: options.port,
      role: options.role,
      roles: options.roles,
    };
    this.#log = log;
    this.#clock = deps.clock ?? suspendAwareClock();
    this.#zonePath = namePath(options.prefix, options.pattern.zone);
    if (deps.zone) {
      this.#zone = deps.zone;
    } else {
      if (!(client instanceof Etcd3)) throw new Error("idetcd: a zone copy is needed");
      this.#ownZone = new Mirror(client, this.#zonePath + "/", log, {
        endpoints: options.endpoints,
        trackLeases: false,
      });
      this.#zone = this.#ownZone;
    }
    const { pattern, limit, roles } = options;
    if (deps.view && !deps.view.fits(this.#zonePath, pattern, limit, roles)) {
      throw new Error(
        "idetcd: a shared zone view must have the claimer's pattern, limit and roles",
      );
    }
    this.#view = deps.view ?? new ZoneView(this.#zone, this.#zonePath, pattern, limit, roles);
    const marginMs = options.marginMs ?? defaultMarginMs(options.leaseSeconds);
    this.#keeper = new LeaseKeeper(
      this.#kv,
      { ttlSeconds: options.leaseSeconds, marginMs },
      this.#clock,
      log,
      {
        expiring: (lease) => this.#post("expiring", lease.id),
        gone: (lease) => this.#post("gone", lease.id),
        renewed: (lease) => this.#post("renewed", lease.id),
      },
    );
    this.#first.promise.catch(() => {});
  }

  /** Counters since creation. */
  get stats(): Readonly<ClaimStats> {
    return { ...this.#stats, requests: this.#kv.requests ?? 0 };
  }

  /** The driver's state now. */
  get state(): ClaimState {
    return this.#state;
  }

  /**
   * Changes whenever {@link Claimer.current} may answer differently (a state
   * change, or the fence passing before the driver has reacted): answers
   * derived from it may be kept while it stays the same.
   */
  epoch(): number {
    return this.#stateChanges * 2 + (this.current() ? 0 : 1);
  }

  /** The lease keeper's deadline and margin, for status and tests (clock ms). */
  get fence(): { deadline: number; vouchUntil: number; now: number } {
    return {
      deadline: this.#keeper.deadline,
      vouchUntil: this.#keeper.vouchUntil,
      now: this.#clock.now(),
    };
  }

  /**
   * The name held right now, or undefined (not yet claimed, fenced, lost,
   * released). Checks the lease's deadline itself, so it is right even
   * between the deadline and the driver's reaction to it.
   */
  current(): Claimed | undefined {
    return this.#state.kind === "held" && this.#keeper.vouches() ? this.#state.claimed : undefined;
  }

  /** Subscribes to changes of {@link Claimer.current}; returns the unsubscribe function. */
  onChange(listener: ClaimListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Subscribes to every state change; returns the unsubscribe function. */
  onState(listener: (state: ClaimState) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /**
   * Claims a name (once; later calls return the same promise). Rejects with a
   * ClaimError when every name is taken (and `wait` is not set or timed out)
   * or etcd stays unreachable; afterwards the name is held until release.
   */
  claim(): Promise<Claimed> {
    if (this.#releasing) return Promise.reject(new ClaimError("idetcd: the claimer was released"));
    if (!this.#loop) {
      this.#ownZone?.start();
      // Through the view: claimers sharing it share coalesced change batches.
      this.#monitor = new OwnershipMonitor(this.#view.copy, this.#zonePath, this.#options.pattern, {
        onChange: () => this.#post("copy"),
        onSlotFreed: () => this.#post("slot"),
      });
      this.#loop = this.#run();
    }
    return this.#first.promise;
  }

  /**
   * Gives the name up: by default revokes the lease so every record
   * disappears at once. `{ revoke: false }` only stops (as a killed process
   * would), leaving the records to expire with the lease.
   */
  release(options: { revoke?: boolean } = {}): Promise<void> {
    this.#releasing ??= this.#release(options.revoke ?? true);
    return this.#releasing;
  }

  // -------------------------------------------------------------------------
  // Events.

  #post(kind: EventKind, lease?: string): void {
    this.#pending.set(kind, lease);
    this.#wake?.();
  }

  /** The most urgent pending event, waiting up to `ms` (forever without); undefined on timeout. */
  async #next(ms?: number): Promise<{ kind: EventKind; lease?: string } | undefined> {
    while (true) {
      for (const kind of EVENT_ORDER) {
        if (this.#pending.has(kind)) {
          const lease = this.#pending.get(kind);
          this.#pending.delete(kind);
          return { kind, lease };
        }
      }
      if (ms !== undefined && ms <= 0) return undefined;
      const woke = await new Promise<boolean>((resolve) => {
        const timer = ms === undefined
          ? undefined
          : this.#clock.setTimeout(() => resolve(false), ms);
        this.#wake = () => {
          if (timer !== undefined) this.#clock.clearTimeout(timer);
          resolve(true);
        };
      });
      this.#wake = undefined;
      if (!woke) return undefined;
    }
  }

  /** Sleeps `ms` unless a stop is requested. */
  async #pause(ms: number): Promise<void> {
    const until = this.#clock.now() + ms;
    // A "renewed" is acted on after the pause (it is what a failed check retries).
    let renewed: { lease?: string } | undefined;
    if (this.#pending.has("renewed")) {
      renewed = { lease: this.#pending.get("renewed") };
      this.#pending.delete("renewed");
    }
    try {
      while (!this.#stopRequested) {
        const left = until - this.#clock.now();
        if (left <= 0) return;
        const event = await this.#next(left);
        if (!event) return;
        if (event.kind === "stop") {
          this.#pending.set("stop", undefined);
          return;
        }
        if (event.kind === "renewed") {
          renewed = { lease: event.lease };
          continue;
        }
        // Other events are judged again in the next state; a lease's end or fence cuts the pause short.
        if (event.kind === "gone" || event.kind === "expiring") {
          this.#pending.set(event.kind, event.lease);
          return;
        }
      }
    } finally {
      if (renewed) this.#pending.set("renewed", renewed.lease);
    }
  }

  // -------------------------------------------------------------------------
  // State changes.

  #set(next: ClaimState): void {
    const before = this.#state;
    this.#state = next;
    this.#stateChanges++;
    for (const listener of [...this.#stateListeners]) {
      try {
        listener(next);
      } catch (err) {
        this.#log.error(`claim state listener failed: ${oneLine(err)}`);
      }
    }
    const wasHeld = before.kind === "held";
    const isHeld = next.kind === "held";
    if (isHeld && (!wasHeld || before.claimed !== next.claimed)) {
      this.#emit(next.claimed, "claimed");
    } else if (wasHeld && !isHeld) {
      this.#emit(undefined, "reason" in next ? next.reason : next.kind);
    }
  }

  #emit(current: Claimed | undefined, reason: string): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(current, reason);
      } catch (err) {
        this.#log.error(`claim listener failed: ${oneLine(err)}`);
      }
    }
  }

  #adopt(attempt: Attempt & { kind: "claimed" }): void {
    const { claimed, how } = attempt;
    this.#lastId = claimed.id;
    this.#warnedFull = false;
    this.#stats.claims++;
    if (how) this.#log.info(`${claimed.name} (ID ${claimed.id}): ${how}`);
    this.#log.info(`claimed ${claimed.name} (ID ${claimed.id})`);
    this.#set({ kind: "held", claimed });
    this.#first.resolve(claimed);
  }

  /** The held name is no longer ours: claim again, same ID first. */
  #lose(claimed: Claimed, reason: string): void {
    this.#stats.losses++;
    this.#log.warning(
      `lost ${claimed.name} (ID ${claimed.id}): ${reason}; claiming again, ID ${claimed.id} first`,
    );
    this.#set({ kind: "claiming", reason });
  }

  #fail(error: ClaimError): void {
    this.#set({ kind: "stopped", reason: error.message });
    this.#first.reject(error);
  }

  // -------------------------------------------------------------------------
  // The loop.

  async #run(): Promise<void> {
    const { wait } = this.#options;
    const started = this.#clock.now();
    const waitDeadline = wait
      ? (wait.timeoutSeconds ? started + wait.timeoutSeconds * 1000 : Infinity)
      : undefined;
    this.#answeredAt = started;
    const silence = (this.#options.connectTimeoutSeconds ?? DEFAULT_CONNECT_TIMEOUT_S) * 1000;
    // Without `wait`, the first claim gives up only when etcd has not answered it for that long.
    const connectDeadline = () => waitDeadline ?? this.#answeredAt + silence;
    let backoff = 100;
    let warned = false;
    while (this.#state.kind !== "stopped") {
      if (this.#stopRequested) break;
      const state = this.#state;
      try {
        switch (state.kind) {
          case "starting":
          case "claiming":
          case "waiting":
            await this.#claimStep(state, waitDeadline);
            break;
          case "held":
            await this.#heldStep(state.claimed);
            break;
          case "fenced":
            await this.#fencedStep(state.claimed);
            break;
        }
        backoff = 100;
      } catch (err) {
        if (this.#stopRequested || (this.#state as ClaimState).kind === "stopped") break;
        if (err instanceof ClaimError) {
          this.#fail(err);
          await this.#keeper.revoke();
          break;
        }
        const failure = classifyFailure(err);
        if (failure === "lease-not-found") {
          // etcd no longer has the lease: replace it at once instead of retrying with it.
          this.#keeper.drop();
          continue;
        }
        if (this.#state.kind === "starting" && this.#clock.now() >= connectDeadline()) {
          this.#fail(
            new ClaimError(
              `idetcd: cannot claim a name of ${this.#options.pattern.source} in etcd at ${
                this.#options.endpoints ?? "the configured endpoints"
              }: ${oneLine(err)}`,
            ),
          );
          await this.#keeper.revoke();
          break;
        }
        this.#stats.retries++;
        const doing = this.#state.kind === "fenced" ? "checking" : "claiming";
        if (this.#state.kind !== "starting" || !warned) {
          this.#log.warning(
            `${doing} a name failed: ${oneLine(err)}; retrying${
              this.#state.kind === "starting" ? "" : ` in ${backoff} ms`
            }`,
          );
          warned = true;
        }
        await this.#pause(backoff);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
  }

  async #claimStep(
    state: ClaimState & { kind: "starting" | "claiming" | "waiting" },
    waitDeadline: number | undefined,
  ): Promise<void> {
    const { pattern, limit } = this.#options;
    const first = state.kind === "starting";
    let attempt: Attempt | undefined;
    try {
      attempt = await this.#attempt(first);
    } catch (err) {
      if (first && classifyFailure(err) === "no-space") {
        // etcd refuses writes: keep the name an earlier instance of this node still holds.
        const kept = await this.#adoptEarlierLease(err);
        if (kept) return this.#adopt(kept);
      }
      throw err;
    }
    if (this.#stopRequested) return;
    if (attempt.kind === "claimed") return this.#adopt(attempt);
    if (attempt.kind === "superseded") {
      if (first) {
        throw new ClaimError(
          `idetcd: another instance with identity ${this.#options.identity} holds ID ${attempt.id}`,
        );
      }
      return await this.#supersede(attempt.id);
    }
    // All names (of the role) are taken.
    const role = this.#options.role;
    const count = role ? this.#allowed()!.size : limit;
    const what = role
      ? `${count} names of role ${role} of ${pattern.source}`
      : `${limit} names of ${pattern.source}`;
    const fix = role ? "raise the role's range or free a node" : "raise limit or free a node";
    if (first && waitDeadline === undefined) {
      throw new ClaimError(
        role
          ? `idetcd: all ${what} are taken; ${fix}`
          : `idetcd: all ${what} are taken (limit ${limit}); ${fix}`,
      );
    }
    if (first && this.#clock.now() >= waitDeadline!) {
      throw new ClaimError(
        `idetcd: no name of ${role ? `role ${role} of ` : ""}${pattern.source} became free within ${
          this.#options.wait!.timeoutSeconds
        }s (all ${count} taken); ${fix}`,
      );
    }
    if (!this.#warnedFull) {
      if (first) {
        this.#log.info(`all ${what} are taken; waiting for one to become free`);
      } else {
        this.#log.error(`all ${what} are taken; this node has no name until one becomes free`);
      }
      this.#warnedFull = true;
    }
    if (!first) this.#set({ kind: "waiting", reason: `all ${count} names are taken` });
    const left = waitDeadline === undefined || !first
      ? 5_000
      : Math.min(5_000, waitDeadline - this.#clock.now());
    // A freed slot (a lock deleted in the copy) wakes the wait early.
    const until = this.#clock.now() + left;
    while (!this.#stopRequested) {
      const event = await this.#next(until - this.#clock.now());
      if (!event || event.kind === "slot" || event.kind === "stop") return;
    }
  }

  async #heldStep(claimed: Claimed): Promise<void> {
    const event = await this.#next();
    if (!event || this.#stopRequested) return;
    switch (event.kind) {
      case "stop":
        return;
      case "expiring": {
        if (event.lease !== claimed.leaseId) return;
        const reason = `no keep-alive of lease ${claimed.leaseId} was acknowledged in time; ` +
          `it may end within ${((this.#keeper.deadline - this.#clock.now()) / 1000).toFixed(1)}s`;
        this.#stats.losses++;
        this.#log.warning(
          `stopped vouching for ${claimed.name} (ID ${claimed.id}): ${reason}; claiming again once etcd answers`,
        );
        this.#set({ kind: "fenced", claimed, reason });
        return;
      }
      case "gone":
        if (event.lease !== claimed.leaseId) return;
        return this.#lose(claimed, "its lease expired");
      case "copy":
        return await this.#judge(claimed, false);
      default:
        return;
    }
  }

  async #fencedStep(claimed: Claimed): Promise<void> {
    const event = await this.#next();
    if (!event || this.#stopRequested) return;
    switch (event.kind) {
      case "renewed": {
        if (event.lease !== claimed.leaseId) return;
        // The lease lived through it: believe the lock again only after reading it.
        let kvs;
        try {
          kvs = await this.#kv.range(claimed.key);
        } catch (err) {
          // Read it again after the pause: the keeper does not say "renewed" twice.
          this.#pending.set("renewed", claimed.leaseId);
          throw err;
        }
        const kv = kvs[0];
        if (this.#state.kind !== "fenced") return;
        if (kv && kv.lease === claimed.leaseId && kv.createRevision === claimed.createRevision) {
          this.#log.info(`${claimed.name} (ID ${claimed.id}) is still held by this node`);
          this.#set({ kind: "held", claimed });
          this.#pending.set("copy", undefined); // check the address records once
          return;
        }
        if (kv && decodeLock(kv.value)?.identity === this.#options.identity) {
          return await this.#supersede(claimed.id);
        }
        return this.#lose(
          claimed,
          kv ? "its lock now belongs to another lease" : "its lock was deleted",
        );
      }
      case "gone":
        if (event.lease !== claimed.leaseId) return;
        this.#log.warning(
          `lease ${claimed.leaseId} of ${claimed.name} (ID ${claimed.id}) is gone; claiming again, ID ${claimed.id} first`,
        );
        return this.#set({ kind: "claiming", reason: "its lease expired" });
      case "copy":
        return await this.#judge(claimed, true);
      default:
        return;
    }
  }

  /** Acts on what the copy says about the held lock. */
  async #judge(claimed: Claimed, fenced: boolean): Promise<void> {
    const verdict = judgeOwnership(this.#zone, claimed, this.#options.identity);
    switch (verdict.kind) {
      case "unknown":
        return;
      case "superseded":
        return await this.#supersede(claimed.id);
      case "lost":
        if (fenced) {
          this.#log.warning(
            `lost ${claimed.name} (ID ${claimed.id}): ${verdict.reason}; claiming again, ID ${claimed.id} first`,
          );
          return this.#set({ kind: "claiming", reason: verdict.reason });
        }
        return this.#lose(claimed, verdict.reason);
      case "ours": {
        if (fenced) return;
        const repair = repairTxn(claimed, verdict.children);
        if (!repair) return;
        const res = await this.#kv.txn(repair);
        if (res.succeeded) {
          this.#log.warning(`the address records of ${claimed.name} were changed; rewrote them`);
        }
        return;
      }
    }
  }

  /** Another instance with our identity (started later) holds the name: step back for good. */
  async #supersede(id: number): Promise<void> {
    const name = this.#options.pattern.render(id);
    this.#log.error(
      `${name} (ID ${id}) was taken over by another instance with identity ${this.#options.identity}; this instance stops claiming (identities must be unique per node)`,
    );
    this.#set({ kind: "stopped", reason: "taken over by another instance with the same identity" });
    this.#first.reject(
      new ClaimError(
        `idetcd: another instance with identity ${this.#options.identity} holds ID ${id}`,
      ),
    );
    await this.#keeper.revoke();
  }

  // -------------------------------------------------------------------------
  // One pass over the slots.

  async #lease(): Promise<HeldLease> {
    const lease = this.#keeper.lease ?? await this.#keeper.grant();
    if (this.#stopRequested) throw new ClaimError("idetcd: released before a name was claimed");
    return lease;
  }

  /** The IDs this claimer may take (its role's); undefined: any. */
  #allowed(): ReadonlySet<number> | undefined {
    const ids = this.#options.roles?.idsOf(this.#options.role);
    return ids ? new Set(ids) : undefined;
  }

  async #attempt(takeover: boolean): Promise<Attempt> {
    const { limit, identity, prefix, pattern, role } = this.#options;
    const lease = await this.#lease();
    const myQueueKey = queueKey(prefix, pattern, lease.id);
    const allowed = this.#allowed();
    // IDs this claimer asks for first: its previous one in this process, the state file's.
    const declared = [this.#lastId, this.#options.preferredId]
      .filter((id): id is number =>
        id !== undefined && id >= 1 && id <= limit && (!allowed || allowed.has(id))
      );
    const started = this.#clock.now();
    let tookOver = !takeover;
    let losses = 0;
    const joined = await this.#kv.txn(joinQueue(myQueueKey, identity, declared, lease.id, role));
    // The copy must show our queue entry (and so everything before it) before we read it.
    let zone = await this.#look(joined.revision);
    while (true) {
      if (this.#stopRequested) throw new ClaimError("idetcd: released before a name was claimed");
      const free = allowed ? zone.free.filter((id) => allowed.has(id)) : zone.free;

      // Slots whose lock carries our identity, lowest ID first.
      const own = (zone.holders.get(identity) ?? []).map((id) =>
        [id, zone.locks.get(id)!] as const
      );
      const mine = own.find(([, kv]) => kv.lease === lease.id);
      if (mine) {
        // Already ours under this very lease (a lost-then-found lock): keep it.
        const [id, kv] = mine;
        await this.#kv.txn({ compare: [], success: [{ delete: { key: myQueueKey } }] });
        return { kind: "claimed", claimed: this.#claimedFrom(id, kv, lease), how: "" };
      }
      if (own.length > 0) {
        if (!takeover) return { kind: "superseded", id: own[0][0] };
        if (!tookOver) {
          tookOver = true;
          const [id, kv] = own[0];
          const write = claimTxn(
            this.#subject,
            id,
            lease.id,
            { modRevision: kv.modRevision },
            zone.children.get(id) ?? [],
            myQueueKey,
            new Date().toISOString(),
          );
          const res = await this.#kv.txn(write.request);
          if (res.succeeded) {
            // The earlier instance's lease now holds nothing of ours: end it, now that ours is written.
            if (kv.lease !== "0" && kv.lease !== lease.id) {
              await this.#kv.revoke(kv.lease, 3_000).catch((err) =>
                this.#log.debug(`revoking the earlier lease ${kv.lease} failed: ${oneLine(err)}`)
              );
            }
            return {
              kind: "claimed",
              claimed: this.#claimed(id, write, lease, kv.createRevision, res.revision),
              how: "took it back from an earlier instance with the same identity",
            };
          }
          // Someone changed that lock meanwhile: look again once the copy shows it.
          zone = await this.#look(this.#afterLoss(res, zone));
          continue;
        }
      }

      if (free.length === 0) return { kind: "full" };
      const preferences = [...declared, ...(zone.remembered.get(identity) ?? [])];
      let id = zone.allocation.get(myQueueKey);
      if (id === undefined) {
        // Every free ID is promised to claimers ahead in the queue. They finish in
        // milliseconds unless they died; wait for the copy to change (no request),
        // and after twice the lease race for the lowest.
        const left = started + 2 * lease.ttl * 1000 - this.#clock.now();
        if (left > 0) {
          const next = await this.#view.read(zone.revision + 1, left, this.#abort.signal);
          if (next) {
            zone = next;
            continue;
          }
          if (this.#stopRequested) continue;
        }
        id = preferences.find((p) => free.includes(p)) ?? free[0];
      }
      const write = claimTxn(
        this.#subject,
        id,
        lease.id,
        { createRevision: 0 },
        zone.children.get(id) ?? [],
        myQueueKey,
        new Date().toISOString(),
      );
      const res = await this.#kv.txn(write.request);
      if (res.succeeded) {
        const how = this.#lastId === undefined && preferences.includes(id)
          ? "the ID this node held before"
          : "";
        return {
          kind: "claimed",
          claimed: this.#claimed(id, write, lease, res.revision, res.revision),
          how,
        };
      }
      this.#stats.lostRaces++;
      losses++;
      await this.#jitter(Math.random() * Math.min(JITTER_MAX_MS, 2 ** losses));
      zone = await this.#look(this.#afterLoss(res, zone));
    }
  }

  /**
   * The revision the next reading must reach after a lost compare: the
   * winner's lock as the failed transaction read it (a key of the zone, so the
   * copy gets there), else one past the last reading.
   */
  #afterLoss(res: TxnResult, zone: ZoneReading): number {
    const winner = res.ranges[0]?.[0];
    return Math.max(winner?.modRevision ?? 0, zone.revision + 1);
  }

  /**
   * The zone at a revision ≥ `revision`, from the copy; when the copy does not
   * get there within {@link COPY_PATIENCE_MS} (its watch is stuck or far
   * behind), one listing from etcd instead.
   */
  async #look(revision: number): Promise<ZoneReading> {
    const reading = await this.#view.read(revision, COPY_PATIENCE_MS, this.#abort.signal);
    if (reading) return reading;
    if (this.#stopRequested) throw new ClaimError("idetcd: released before a name was claimed");
    this.#log.debug(
      `the zone's copy is at revision ${this.#zone.revision}, not ${revision}, after ${COPY_PATIENCE_MS} ms; reading the zone from etcd`,
    );
    // Through the view: claimers sharing it share a listing new enough for each.
    return await this.#view.listed(revision, async () => {
      this.#stats.directReads++;
      const listed = await this.#kv.txn({
        compare: [],
        success: [{ range: { key: this.#zonePath + "/", prefix: true } }],
      });
      return { kvs: listed.ranges[0] ?? [], revision: listed.revision };
    });
  }

  /**
   * While etcd refuses writes (NOSPACE), a restarted node cannot write a new
   * claim; if its earlier instance's lock is still there under a live lease,
   * it keeps that lease alive and holds the name under it.
   */
  async #adoptEarlierLease(cause: unknown): Promise<(Attempt & { kind: "claimed" }) | undefined> {
    const { pattern, limit, identity } = this.#options;
    const kvs = await this.#kv.range(this.#zonePath + "/", { prefix: true });
    const zone = readZone(kvs, this.#zonePath, pattern, limit);
    const own = [...zone.locks.entries()]
      .filter(([, kv]) => decodeLock(kv.value)?.identity === identity && kv.lease !== "0")
      .sort(([a], [b]) => a - b)[0];
    if (!own) return undefined;
    const [id, kv] = own;
    this.#keeper.drop();
    const lease = await this.#keeper.adopt(kv.lease);
    if (!lease) return undefined;
    this.#log.warning(
      `etcd refuses writes (${oneLine(cause)}); keeping ${
        pattern.render(id)
      } (ID ${id}) under the earlier lease ${kv.lease} until it can be claimed anew`,
    );
    return {
      kind: "claimed",
      claimed: { ...this.#claimedFrom(id, kv, lease), revision: kv.modRevision },
      how: "kept from an earlier instance with the same identity (etcd is out of space)",
    };
  }

  #claimedFrom(
    id: number,
    kv: { key: string; value: string; createRevision: number; modRevision: number },
    lease: HeldLease,
  ): Claimed {
    const info = decodeLock(kv.value);
    return {
      id,
      name: this.#options.pattern.render(id),
      key: kv.key,
      addresses: info?.addresses ?? this.#options.addresses,
      port: info?.port,
      identity: this.#options.identity,
      leaseId: lease.id,
      leaseSeconds: lease.ttl,
      createRevision: kv.createRevision,
      revision: kv.modRevision,
      claimedAt: info?.claimedAt ?? new Date().toISOString(),
    };
  }

  #claimed(
    id: number,
    write: { key: string; name: string; claimedAt: string },
    lease: HeldLease,
    createRevision: number,
    revision: number,
  ): Claimed {
    return {
      id,
      name: write.name,
      key: write.key,
      addresses: [...this.#options.addresses],
      port: this.#options.port,
      identity: this.#options.identity,
      leaseId: lease.id,
      leaseSeconds: lease.ttl,
      createRevision,
      revision,
      claimedAt: write.claimedAt,
    };
  }

  /** A short pause that release does not have to wait out for long. */
  #jitter(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // -------------------------------------------------------------------------
  // Release.

  async #release(revoke: boolean): Promise<void> {
    const before = this.#state;
    this.#stopRequested = true;
    this.#abort.abort();
    this.#post("stop");
    await this.#loop;
    this.#monitor?.close();
    const held = before.kind === "held" || before.kind === "fenced" ? before.claimed : undefined;
    let revoked = false;
    if (revoke && this.#keeper.lease) {
      revoked = await this.#giveUp(held);
    } else {
      await this.#keeper.stop();
    }
    await this.#keeper.stop();
    if (this.#state.kind !== "stopped") this.#set({ kind: "stopped", reason: "released" });
    this.#first.reject(new ClaimError("idetcd: released before a name was claimed"));
    if (held && before.kind === "held") {
      this.#log.info(
        revoked
          ? `released ${held.name} (ID ${held.id})`
          : `stopped holding ${held.name} (ID ${held.id}); it expires with lease ${held.leaseId}`,
      );
    }
    await this.#ownZone?.close();
  }

  /**
   * Deletes the name with a "released" mark, then revokes the lease. While
   * etcd is out of space (the mark cannot be written) the lease is left to
   * expire instead: no node could claim the name anyway, and a restart of
   * this node within the lease keeps it.
   */
  async #giveUp(held: Claimed | undefined): Promise<boolean> {
    if (held) {
      try {
        await this.#kv.txn(releaseTxn(this.#subject, held, held.claimedAt), RELEASE_TIMEOUT_MS);
      } catch (err) {
        if (classifyFailure(err) === "no-space") {
          this.#log.warning(
            `etcd refuses writes (${
              oneLine(err)
            }); leaving lease ${held.leaseId} to expire so that a restart keeps ${held.name}`,
          );
          return false;
        }
        this.#log.debug(`releasing ${held.name}: ${oneLine(err)}`);
      }
    }
    return await this.#keeper.revoke(RELEASE_TIMEOUT_MS);
  }
}
