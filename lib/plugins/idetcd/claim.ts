/**
 * The claim: taking the first free name of the pattern in etcd atomically and
 * holding it for as long as the node lives.
 *
 *     start    -> grant a lease; one txn joins the zone's queue (a key under the
 *                 lease) and lists the zone (one range read)
 *                 -> a slot whose lock carries our identity: take it over
 *                    (txn on its mod_revision; a restarted node gets its ID back,
 *                    even before its old lease expired)
 *                 -> else the ID the queue assigns us: claimers in create_revision
 *                    order each take their first free preference (previous ID in
 *                    this process, the state file's, the lease-less "last holder"
 *                    record) else the lowest free ID; every claimer computes the
 *                    same assignment, so a boot storm does not collide
 *                 -> txn(if create_revision(lock) == 0 then put lock, address
 *                    records (lease) and "last holder", delete the queue key);
 *                    a lost race looks again
 *                 -> all taken: fail with a clear error, or wait (`wait`) for a
 *                    delete in the zone
 *     claimed  -> keep the lease alive (every TTL/3, retried every 500 ms on
 *                 failure); watch the lock and its records; ownership = our
 *                 lease ID and the lock's create_revision, never its value
 *                 -> lock deleted / lease gone: claim again, same ID first
 *                 -> address record changed: rewrite it (guarded by the lock)
 *                 -> lock re-written by a newer instance with our identity: stop
 *     release  -> revoke the lease (every record disappears at once)
 *
 * The claimer never throws after the first claim: etcd errors are logged and
 * retried, and while the lease's fate is unknown (etcd unreachable for longer
 * than the lease) {@link Claimer.current} reports no name.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  CompareResult,
  CompareTarget,
  type Etcd3,
  EtcdLeaseInvalidError,
  type IKeyValue,
  type IRequestOp,
  type Watcher,
} from "etcd3";
import type { KeyValue } from "../../etcd/types.ts";
import type { Logger } from "../../log.ts";
import type { NamePattern } from "./pattern.ts";
import {
  addressKey,
  allocateIds,
  decodeLock,
  decodeMemory,
  decodeQueue,
  encodeAddress,
  encodeLock,
  encodeMemory,
  encodeQueue,
  lockKey,
  memoryKey,
  namePath,
  parseSlotKey,
  type QueueEntry,
  queueKey,
} from "./records.ts";

/** What the claimer needs to know. */
export interface ClaimOptions {
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
  /** Wait for a free slot instead of failing; without timeoutSeconds, forever. */
  wait?: { timeoutSeconds?: number };
  /** An ID this node held before (e.g. from its state file), tried first when free. */
  preferredId?: number;
  /** How long the first claim retries while etcd is unreachable (seconds, default 15; with `wait`, the wait timeout). */
  connectTimeoutSeconds?: number;
  /** The endpoints, for messages. */
  endpoints?: string;
}

/** A name this node holds. */
export interface Claimed {
  id: number;
  /** Lower-case, fully qualified ("worker4.tf.local."). */
  name: string;
  /** The lock key in etcd. */
  key: string;
  addresses: string[];
  port?: number;
  identity: string;
  /** The lease holding every record (decimal). */
  leaseId: string;
  /** The lease length etcd granted, seconds. */
  leaseSeconds: number;
  /** The lock's create_revision: together with the lease, proof of ownership. */
  createRevision: number;
  /** ISO 8601 time of the claim. */
  claimedAt: string;
}

/** Called when the held name changes: a new claim, a loss (undefined), a release. */
export type ClaimListener = (current: Claimed | undefined, reason: string) => void;

/** A claim that cannot be made; the message is one line meant for the user. */
export class ClaimError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ClaimError";
  }
}

/** Counters for tests and metrics. */
export interface ClaimStats {
  /** etcd requests made (grant, range, txn, keepalive, revoke, watch). */
  requests: number;
  /** Claim transactions that lost a race. */
  lostRaces: number;
  /** Names claimed (first claim and re-claims). */
  claims: number;
  /** Names lost while running. */
  losses: number;
}

interface HeldLease {
  id: string;
  /** Granted TTL, seconds. */
  ttl: number;
  /** performance.now() when the last successful grant/keepalive was sent. */
  confirmedAt: number;
  /** Consecutive keepalive failures. */
  failures: number;
}

/** The zone as one snapshot shows it. */
interface ZoneSnapshot {
  locks: Map<number, KeyValue>;
  /** Address record keys per ID. */
  children: Map<number, string[]>;
  /** Identity -> IDs it held last. */
  remembered: Map<string, number[]>;
  /** Queue key -> the ID the queue assigns it. */
  allocation: Map<string, number>;
}

type Attempt =
  | { kind: "claimed"; claimed: Claimed; how: string; watchFrom: number }
  | { kind: "full" }
  | { kind: "superseded"; id: number };

/** One line from any thrown value. */
function describe(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split("\n")[0];
}

/** The smallest key greater than every key starting with `prefix`. */
function prefixEnd(prefix: string): Buffer {
  const bytes = Buffer.from(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i] < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i]++;
      return end;
    }
  }
  return Buffer.from([0]);
}

function toKeyValue(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString(),
    value: kv.value?.toString() ?? "",
    lease: kv.lease ?? "0",
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
  };
}

const CALL_TIMEOUT_MS = 5_000;
/** Longest pause after a lost race, ms. */
const JITTER_MAX_MS = 200;
const DEFAULT_CONNECT_TIMEOUT_S = 15;

/** Claims and holds one name of a pattern; see the module doc. */
export class Claimer {
  readonly #client: Etcd3;
  readonly #options: ClaimOptions;
  readonly #log: Logger;
  /** The zone's path: every lock is directly below it. */
  readonly #base: string;

  #phase: "idle" | "running" | "released" | "superseded" = "idle";
  #lease?: HeldLease;
  #held?: Claimed;
  /** False while etcd has been unreachable for longer than the lease. */
  #confirmed = false;
  #lastId?: number;
  #lockWatcher?: Watcher;
  #lockWatcherConnects = 0;
  #slotWatcher?: Watcher;
  #keepaliveTimer?: ReturnType<typeof setTimeout>;
  #keepaliveInFlight?: Promise<void>;
  #napTimer?: ReturnType<typeof setTimeout>;
  #wake?: () => void;
  #verifyRequested = false;
  #firstClaim?: Promise<Claimed>;
  #driver?: Promise<void>;
  #releasing?: Promise<void>;
  #listeners = new Set<ClaimListener>();
  #stats: ClaimStats = { requests: 0, lostRaces: 0, claims: 0, losses: 0 };
  #warnedFull = false;

  /** Creates an idle claimer; nothing happens until {@link Claimer.claim}. */
  constructor(client: Etcd3, options: ClaimOptions, log: Logger) {
    if (options.addresses.length === 0) throw new Error("idetcd: no address to advertise");
    this.#client = client;
    this.#options = options;
    this.#log = log;
    this.#base = namePath(options.prefix, options.pattern.zone);
  }

  /** Counters since creation. */
  get stats(): Readonly<ClaimStats> {
    return this.#stats;
  }

  /** The name held right now, or undefined (not yet claimed, lost, unconfirmed, released). */
  current(): Claimed | undefined {
    return this.#confirmed ? this.#held : undefined;
  }

  /** Subscribes to changes of {@link Claimer.current}; returns the unsubscribe function. */
  onChange(listener: ClaimListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Claims a name (once; later calls return the same promise). Rejects with a
   * ClaimError when every name is taken (and `wait` is not set or timed out)
   * or etcd stays unreachable; afterwards the name is held until release.
   */
  claim(): Promise<Claimed> {
    if (this.#phase === "released" || this.#phase === "superseded") {
      return Promise.reject(new ClaimError("idetcd: the claimer was released"));
    }
    if (!this.#firstClaim) {
      this.#phase = "running";
      this.#firstClaim = this.#claimFirst();
      // The caller handles the rejection; this copy only keeps it from being reported twice.
      this.#firstClaim.catch(() => {});
    }
    return this.#firstClaim;
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
  // The first claim.

  async #claimFirst(): Promise<Claimed> {
    const { wait, pattern, limit } = this.#options;
    const started = performance.now();
    const waitDeadline = wait
      ? (wait.timeoutSeconds ? started + wait.timeoutSeconds * 1000 : Infinity)
      : undefined;
    const connectDeadline = waitDeadline ??
      started + (this.#options.connectTimeoutSeconds ?? DEFAULT_CONNECT_TIMEOUT_S) * 1000;
    let backoff = 100;
    let warned = false;
    while (true) {
      if (this.#phase !== "running") {
        throw new ClaimError("idetcd: released before a name was claimed");
      }
      try {
        const attempt = await this.#attempt(true);
        if (this.#phase !== "running") {
          throw new ClaimError("idetcd: released before a name was claimed");
        }
        if (attempt.kind === "claimed") {
          this.#adopt(attempt);
          this.#driver = this.#drive();
          return attempt.claimed;
        }
        if (attempt.kind === "superseded") {
          throw new ClaimError(
            `idetcd: another instance with identity ${this.#options.identity} holds ID ${attempt.id}`,
          );
        }
        if (waitDeadline === undefined) {
          throw new ClaimError(
            `idetcd: all ${limit} names of ${pattern.source} are taken (limit ${limit}); raise limit or free a node`,
          );
        }
        if (performance.now() >= waitDeadline) {
          throw new ClaimError(
            `idetcd: no name of ${pattern.source} became free within ${
              wait!.timeoutSeconds
            }s (all ${limit} taken); raise limit or free a node`,
          );
        }
        if (!this.#warnedFull) {
          this.#log.info(
            `all ${limit} names of ${pattern.source} are taken; waiting for one to become free`,
          );
          this.#warnedFull = true;
        }
        await this.#waitForSlot(Math.min(5_000, waitDeadline - performance.now()));
      } catch (err) {
        if (err instanceof ClaimError) {
          await this.#dropLease();
          this.#stopSlotWatcher();
          throw err;
        }
        if (performance.now() >= connectDeadline) {
          await this.#dropLease();
          this.#stopSlotWatcher();
          throw new ClaimError(
            `idetcd: cannot claim a name of ${pattern.source} in etcd at ${
              this.#options.endpoints ?? "the configured endpoints"
            }: ${describe(err)}`,
          );
        }
        if (!warned) {
          this.#log.warning(`claiming a name failed: ${describe(err)}; retrying`);
          warned = true;
        }
        await this.#nap(backoff);
        backoff = Math.min(backoff * 2, 2_000);
      }
    }
  }

  // -------------------------------------------------------------------------
  // The running state: verify on watch events, re-claim after a loss.

  async #drive(): Promise<void> {
    let backoff = 250;
    while (this.#phase === "running") {
      try {
        if (this.#held) {
          if (!this.#verifyRequested) {
            await this.#nap();
            continue;
          }
          this.#verifyRequested = false;
          await this.#verify();
          backoff = 250;
          continue;
        }
        const attempt = await this.#attempt(false);
        if (this.#phase !== "running") break;
        backoff = 250;
        if (attempt.kind === "claimed") {
          this.#adopt(attempt);
        } else if (attempt.kind === "superseded") {
          await this.#supersede(attempt.id);
        } else {
          if (!this.#warnedFull) {
            this.#log.error(
              `all ${this.#options.limit} names of ${this.#options.pattern.source} are taken; this node has no name until one becomes free`,
            );
            this.#warnedFull = true;
          }
          await this.#waitForSlot(5_000);
        }
      } catch (err) {
        if (this.#phase !== "running") break;
        this.#log.warning(
          `${this.#held ? "checking" : "claiming"} a name failed: ${
            describe(err)
          }; retrying in ${backoff} ms`,
        );
        if (this.#held) this.#verifyRequested = true;
        await this.#nap(backoff);
        backoff = Math.min(backoff * 2, 5_000);
      }
    }
  }

  /** Sleeps until `ms` pass (forever without) or something wakes the claimer. */
  #nap(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        if (this.#napTimer !== undefined) clearTimeout(this.#napTimer);
        this.#napTimer = undefined;
        this.#wake = undefined;
        resolve();
      };
      this.#wake = done;
      if (ms !== undefined) this.#napTimer = setTimeout(done, Math.max(0, ms));
      if (this.#phase !== "running" && this.#phase !== "idle") done();
    });
  }

  #kick(): void {
    this.#wake?.();
  }

  /** Checks that the lock still carries our lease and create_revision. */
  async #verify(): Promise<void> {
    const held = this.#held;
    if (!held) return;
    // The lock and its address records in one read.
    this.#stats.requests++;
    const res = await this.#client.kv.range(
      { key: Buffer.from(held.key), range_end: prefixEnd(held.key + "/") },
      this.#callOptions(),
    );
    const kvs = res.kvs.map(toKeyValue);
    const kv = kvs.find((k) => k.key === held.key);
    const children = kvs.filter((k) => k.key.startsWith(held.key + "/"));
    if (this.#held !== held || this.#phase !== "running") return;
    const lease = this.#lease;
    if (kv && lease && kv.lease === lease.id && kv.createRevision === held.createRevision) {
      await this.#repairAddresses(held, lease, children);
      if (!this.#confirmed && this.#held === held) {
        this.#confirmed = true;
        this.#log.info(`${held.name} (ID ${held.id}) is still held by this node`);
        this.#emit(held, "confirmed again after an etcd outage");
      }
      return;
    }
    const info = kv ? decodeLock(kv.value) : undefined;
    if (kv && info?.identity === this.#options.identity && kv.lease !== lease?.id) {
      await this.#supersede(held.id);
      return;
    }
    this.#lose(kv ? "its lock now belongs to another lease" : "its lock was deleted");
  }

  /** Rewrites our address records when someone deleted or changed them, guarded by the lock. */
  async #repairAddresses(held: Claimed, lease: HeldLease, children: KeyValue[]): Promise<void> {
    const expected = held.addresses.map((address, i) => ({
      key: addressKey(held.key, i),
      value: encodeAddress(address, held.port),
    }));
    const intact = children.length === expected.length &&
      expected.every((e) =>
        children.some((c) => c.key === e.key && c.value === e.value && c.lease === lease.id)
      );
    if (intact) return;
    const wanted = new Set(expected.map((e) => e.key));
    const res = await this.#txn({
      compare: [
        {
          key: Buffer.from(held.key),
          target: CompareTarget.Create,
          result: CompareResult.Equal,
          create_revision: held.createRevision,
        },
        {
          key: Buffer.from(held.key),
          target: CompareTarget.Lease,
          result: CompareResult.Equal,
          lease: lease.id,
        },
      ],
      success: [
        ...expected.map((e) => ({
          request_put: { key: Buffer.from(e.key), value: Buffer.from(e.value), lease: lease.id },
        })),
        ...children.filter((c) => !wanted.has(c.key)).map((c) => ({
          request_delete_range: { key: Buffer.from(c.key) },
        })),
      ],
      failure: [],
    });
    if (res.succeeded) {
      this.#log.warning(`the address records of ${held.name} were changed; rewrote them`);
    } else {
      this.#verifyRequested = true;
    }
  }

  #adopt(attempt: Attempt & { kind: "claimed" }): void {
    if (this.#phase !== "running") return;
    const { claimed, how, watchFrom } = attempt;
    const previous = this.#lastId;
    this.#held = claimed;
    this.#confirmed = true;
    this.#lastId = claimed.id;
    this.#warnedFull = false;
    this.#stats.claims++;
    this.#stopSlotWatcher();
    this.#watchLock(claimed, watchFrom);
    if (how) this.#log.info(`${claimed.name} (ID ${claimed.id}): ${how}`);
    this.#log.info(`claimed ${claimed.name} (ID ${claimed.id})`);
    this.#emit(
      claimed,
      previous === undefined
        ? "claimed"
        : previous === claimed.id
        ? "re-claimed"
        : "claimed another ID",
    );
  }

  #lose(reason: string): void {
    const previous = this.#held;
    if (!previous) return;
    this.#held = undefined;
    this.#confirmed = false;
    this.#stats.losses++;
    this.#stopLockWatcher();
    if (this.#phase === "running") {
      this.#log.warning(
        `lost ${previous.name} (ID ${previous.id}): ${reason}; claiming again, ID ${previous.id} first`,
      );
    }
    this.#emit(undefined, reason);
    this.#kick();
  }

  /** Another instance with our identity (started later) holds the name: step back for good. */
  async #supersede(id: number): Promise<void> {
    const name = this.#options.pattern.render(id);
    this.#log.error(
      `${name} (ID ${id}) was taken over by another instance with identity ${this.#options.identity}; this instance stops claiming (identities must be unique per node)`,
    );
    const held = this.#held;
    this.#phase = "superseded";
    this.#held = undefined;
    this.#confirmed = false;
    this.#stopLockWatcher();
    this.#stopSlotWatcher();
    if (held) this.#emit(undefined, "taken over by another instance with the same identity");
    await this.#dropLease();
  }

  #emit(current: Claimed | undefined, reason: string): void {
    for (const listener of [...this.#listeners]) {
      try {
        listener(current, reason);
      } catch (err) {
        this.#log.error(`claim listener failed: ${describe(err)}`);
      }
    }
  }

  // -------------------------------------------------------------------------
  // One pass over the slots.

  async #attempt(takeover: boolean): Promise<Attempt> {
    const { limit, identity } = this.#options;
    const lease = await this.#ensureLease();
    const myQueueKey = queueKey(this.#options.prefix, this.#options.pattern, lease.id);
    // IDs this claimer asks for first: its previous one in this process, the state file's.
    const declared = [this.#lastId, this.#options.preferredId]
      .filter((id): id is number => id !== undefined && id >= 1 && id <= limit);
    const started = performance.now();
    let tookOver = !takeover;
    let losses = 0;
    while (true) {
      if (this.#phase !== "running") {
        throw new ClaimError("idetcd: released before a name was claimed");
      }
      const zone = await this.#snapshot(lease, myQueueKey, declared);

      // Slots whose lock carries our identity, lowest ID first.
      const own = [...zone.locks.entries()]
        .filter(([, kv]) => decodeLock(kv.value)?.identity === identity)
        .sort(([a], [b]) => a - b);
      const mine = own.find(([, kv]) => kv.lease === lease.id);
      if (mine) {
        // Already ours under this very lease (a lost-then-found lock): keep it.
        await this.#deleteKey(myQueueKey);
        return {
          kind: "claimed",
          claimed: this.#claimedFrom(mine[0], mine[1], lease),
          how: "",
          watchFrom: mine[1].modRevision + 1,
        };
      }
      if (own.length > 0) {
        if (!takeover) return { kind: "superseded", id: own[0][0] };
        if (!tookOver) {
          tookOver = true;
          const [id, kv] = own[0];
          const taken = await this.#takeOver(id, kv, lease, zone.children.get(id) ?? []);
          if (taken) return taken;
          // Someone changed that lock meanwhile: look again.
          continue;
        }
      }

      const free: number[] = [];
      for (let id = 1; id <= limit; id++) if (!zone.locks.has(id)) free.push(id);
      if (free.length === 0) return { kind: "full" };
      const preferences = [...declared, ...(zone.remembered.get(identity) ?? [])];
      let id = zone.allocation.get(myQueueKey);
      if (id === undefined) {
        // Every free ID is promised to claimers ahead in the queue. They finish in
        // milliseconds unless they died; then fall back to racing for the lowest.
        if (performance.now() - started < 2 * lease.ttl * 1000) {
          await this.#jitter(20 + Math.random() * 80);
          continue;
        }
        id = preferences.find((p) => free.includes(p)) ?? free[0];
      }
      const claimed = await this.#create(id, lease, zone.children.get(id) ?? [], myQueueKey);
      if (claimed) {
        const how = this.#lastId === undefined && preferences.includes(id)
          ? "the ID this node held before"
          : "";
        return { kind: "claimed", claimed, how, watchFrom: claimed.createRevision + 1 };
      }
      this.#stats.lostRaces++;
      losses++;
      await this.#jitter(Math.random() * Math.min(JITTER_MAX_MS, 2 ** losses));
    }
  }

  /** A short pause that release does not have to wait out for long. */
  #jitter(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  /**
   * Joins (or stays in) the zone's queue and lists the zone, in one txn: the
   * locks, address records, remembered holders and the queue's assignment.
   */
  async #snapshot(lease: HeldLease, myQueueKey: string, declared: number[]): Promise<ZoneSnapshot> {
    const from = this.#base + "/";
    const res = await this.#txn({
      compare: [],
      success: [
        {
          request_put: {
            key: Buffer.from(myQueueKey),
            value: Buffer.from(encodeQueue(this.#options.identity, declared)),
            lease: lease.id,
          },
        },
        { request_range: { key: Buffer.from(from), range_end: prefixEnd(from) } },
      ],
      failure: [],
    });
    const kvs = (res.responses[1]?.response_range?.kvs ?? []).map(toKeyValue);
    const locks = new Map<number, KeyValue>();
    const children = new Map<number, string[]>();
    const remembered = new Map<string, number[]>();
    const queued: KeyValue[] = [];
    for (const kv of kvs) {
      const slot = parseSlotKey(this.#base, this.#options.pattern, kv.key);
      if (slot?.kind === "lock") locks.set(slot.id, kv);
      else if (slot?.kind === "address") {
        children.set(slot.id, [...(children.get(slot.id) ?? []), kv.key]);
      } else if (slot?.kind === "memory") {
        const who = decodeMemory(kv.value);
        if (who !== undefined) remembered.set(who, [...(remembered.get(who) ?? []), slot.id]);
      } else if (slot?.kind === "queue") queued.push(kv);
    }
    // Claimers whose identity holds a lock take that one over (or step back): not in the draw.
    const holding = new Set([...locks.values()].map((kv) => decodeLock(kv.value)?.identity));
    const queue: QueueEntry[] = [];
    for (const kv of queued) {
      const entry = decodeQueue(kv.value);
      if (!entry || holding.has(entry.identity)) continue;
      queue.push({
        key: kv.key,
        createRevision: kv.createRevision,
        identity: entry.identity,
        prefers: [
          ...entry.prefers,
          ...(remembered.get(entry.identity) ?? []).sort((a, b) => a - b),
        ],
      });
    }
    const free: number[] = [];
    for (let id = 1; id <= this.#options.limit; id++) if (!locks.has(id)) free.push(id);
    return { locks, children, remembered, allocation: allocateIds(queue, free) };
  }

  #claimedFrom(id: number, kv: KeyValue, lease: HeldLease): Claimed {
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
      claimedAt: info?.claimedAt ?? new Date().toISOString(),
    };
  }

  /** The writes of a claim: the lock, one record per address, and deletes of leftovers. */
  #claimOps(
    id: number,
    lease: HeldLease,
    leftovers: string[],
    myQueueKey: string,
  ): { ops: IRequestOp[]; claimed: Claimed } {
    const { pattern, prefix, addresses, port, identity } = this.#options;
    const key = lockKey(prefix, pattern, id);
    const claimedAt = new Date().toISOString();
    const name = pattern.render(id);
    const ops: IRequestOp[] = [{
      request_put: {
        key: Buffer.from(key),
        value: Buffer.from(encodeLock({ id, name, identity, addresses, port, claimedAt })),
        lease: lease.id,
      },
    }];
    // Remember who held the ID last (no lease), for a clean restart.
    ops.push({
      request_put: {
        key: Buffer.from(memoryKey(prefix, pattern, id)),
        value: Buffer.from(encodeMemory(identity, claimedAt)),
      },
    });
    const written = new Set<string>([key]);
    addresses.forEach((address, i) => {
      const child = addressKey(key, i);
      written.add(child);
      ops.push({
        request_put: {
          key: Buffer.from(child),
          value: Buffer.from(encodeAddress(address, port)),
          lease: lease.id,
        },
      });
    });
    // Address records of an earlier holder that ours do not overwrite.
    for (const old of leftovers) {
      if (!written.has(old)) ops.push({ request_delete_range: { key: Buffer.from(old) } });
    }
    ops.push({ request_delete_range: { key: Buffer.from(myQueueKey) } });
    return {
      ops,
      claimed: {
        id,
        name,
        key,
        addresses: [...addresses],
        port,
        identity,
        leaseId: lease.id,
        leaseSeconds: lease.ttl,
        createRevision: 0,
        claimedAt,
      },
    };
  }

  /** txn(if create_revision(lock) == 0 then claim and leave the queue); undefined when lost. */
  async #create(
    id: number,
    lease: HeldLease,
    leftovers: string[],
    myQueueKey: string,
  ): Promise<Claimed | undefined> {
    const { ops, claimed } = this.#claimOps(id, lease, leftovers, myQueueKey);
    const res = await this.#txn({
      compare: [{
        key: Buffer.from(claimed.key),
        target: CompareTarget.Create,
        result: CompareResult.Equal,
        create_revision: 0,
      }],
      success: ops,
      failure: [],
    });
    return res.succeeded ? { ...claimed, createRevision: Number(res.header.revision) } : undefined;
  }

  /** Replaces a lock left by an earlier instance with our identity, atomically on its mod_revision. */
  async #takeOver(
    id: number,
    old: KeyValue,
    lease: HeldLease,
    leftovers: string[],
  ): Promise<Attempt | undefined> {
    const myQueueKey = queueKey(this.#options.prefix, this.#options.pattern, lease.id);
    const { ops, claimed } = this.#claimOps(id, lease, leftovers, myQueueKey);
    const res = await this.#txn({
      compare: [{
        key: Buffer.from(old.key),
        target: CompareTarget.Mod,
        result: CompareResult.Equal,
        mod_revision: old.modRevision,
      }],
      success: ops,
      failure: [],
    });
    if (!res.succeeded) return undefined;
    if (old.lease !== "0" && old.lease !== lease.id) {
      // The earlier instance's lease now holds nothing of ours; end it rather than let it linger.
      try {
        this.#stats.requests++;
        await this.#client.leaseClient.leaseRevoke({ ID: old.lease }, this.#callOptions());
      } catch (err) {
        if (!(err instanceof EtcdLeaseInvalidError)) {
          this.#log.debug(`revoking the earlier lease ${old.lease} failed: ${describe(err)}`);
        }
      }
    }
    return {
      kind: "claimed",
      claimed: { ...claimed, createRevision: old.createRevision },
      how: "took it back from an earlier instance with the same identity",
      watchFrom: Number(res.header.revision) + 1,
    };
  }

  // -------------------------------------------------------------------------
  // etcd calls.

  #callOptions(timeoutMs = CALL_TIMEOUT_MS): { deadline: number } {
    return { deadline: Date.now() + timeoutMs };
  }

  async #txn(
    request: Parameters<Etcd3["kv"]["txn"]>[0],
  ): ReturnType<Etcd3["kv"]["txn"]> {
    this.#stats.requests++;
    try {
      return await this.#client.kv.txn(request, this.#callOptions());
    } catch (err) {
      // A txn naming a lease etcd no longer has: forget it, the next attempt grants a new one.
      if (err instanceof EtcdLeaseInvalidError) this.#lease = undefined;
      throw err;
    }
  }

  async #deleteKey(key: string): Promise<void> {
    this.#stats.requests++;
    await this.#client.kv.deleteRange({ key: Buffer.from(key) }, this.#callOptions());
  }

  async #get(key: string): Promise<KeyValue | undefined> {
    this.#stats.requests++;
    const res = await this.#client.kv.range({ key: Buffer.from(key) }, this.#callOptions());
    return res.kvs[0] ? toKeyValue(res.kvs[0]) : undefined;
  }

  async #ensureLease(): Promise<HeldLease> {
    if (this.#lease) return this.#lease;
    const sent = performance.now();
    this.#stats.requests++;
    const res = await this.#client.leaseClient.leaseGrant(
      { TTL: this.#options.leaseSeconds, ID: 0 },
      this.#callOptions(),
    );
    if (res.error) throw new Error(`lease grant: ${res.error}`);
    const lease: HeldLease = { id: res.ID, ttl: Number(res.TTL), confirmedAt: sent, failures: 0 };
    if (this.#phase !== "running") {
      // Released while granting: do not leave the lease behind.
      await this.#revoke(lease.id);
      throw new ClaimError("idetcd: released before a name was claimed");
    }
    this.#lease = lease;
    this.#scheduleKeepalive(lease, (lease.ttl * 1000) / 3);
    return lease;
  }

  /** Revokes a lease; false when etcd could not be told (the records then expire with it). */
  async #revoke(id: string): Promise<boolean> {
    try {
      this.#stats.requests++;
      await this.#client.leaseClient.leaseRevoke({ ID: id }, this.#callOptions(3_000));
      return true;
    } catch (err) {
      if (err instanceof EtcdLeaseInvalidError) return true;
      this.#log.warning(
        `revoking lease ${id} failed: ${describe(err)}; its records expire with it`,
      );
      return false;
    }
  }

  /** Forgets and revokes the current lease (nothing is held under it). */
  async #dropLease(): Promise<void> {
    const lease = this.#lease;
    this.#lease = undefined;
    this.#clearKeepalive();
    if (lease) await this.#revoke(lease.id);
  }

  // -------------------------------------------------------------------------
  // Keep-alive: one lease, refreshed every TTL/3, retried every 500 ms on failure.

  #scheduleKeepalive(lease: HeldLease, delayMs: number): void {
    this.#clearKeepalive();
    this.#keepaliveTimer = setTimeout(() => {
      this.#keepaliveTimer = undefined;
      this.#keepaliveInFlight = this.#keepalive(lease).finally(() => {
        this.#keepaliveInFlight = undefined;
      });
    }, delayMs);
  }

  #clearKeepalive(): void {
    if (this.#keepaliveTimer !== undefined) clearTimeout(this.#keepaliveTimer);
    this.#keepaliveTimer = undefined;
  }

  async #keepalive(lease: HeldLease): Promise<void> {
    if (this.#lease !== lease) return;
    const sent = performance.now();
    const interval = (lease.ttl * 1000) / 3;
    let ttl: number;
    try {
      ttl = await this.#keepaliveOnce(lease.id, Math.max(1_000, Math.min(interval, 3_000)));
    } catch (err) {
      if (this.#lease !== lease) return;
      lease.failures++;
      if (lease.failures === 1) {
        this.#log.warning(`keeping lease ${lease.id} alive failed: ${describe(err)}; retrying`);
      }
      const silentMs = performance.now() - lease.confirmedAt;
      if (silentMs > lease.ttl * 1000 && this.#held && this.#confirmed) {
        this.#confirmed = false;
        const held = this.#held;
        this.#log.warning(
          `etcd unreachable for ${
            Math.round(silentMs / 1000)
          }s, longer than the lease: ${held.name} (ID ${held.id}) may have been lost`,
        );
        this.#emit(undefined, "etcd unreachable for longer than the lease");
      }
      this.#scheduleKeepalive(lease, Math.min(500, interval));
      return;
    }
    if (this.#lease !== lease) return;
    if (ttl <= 0) {
      this.#lease = undefined;
      if (this.#held) this.#lose("its lease expired");
      else this.#kick();
      return;
    }
    if (lease.failures > 0) this.#log.info(`lease ${lease.id} kept alive again`);
    lease.failures = 0;
    lease.confirmedAt = sent;
    if (this.#held && !this.#confirmed) {
      // Back after an outage longer than the lease: check the lock before believing it.
      this.#verifyRequested = true;
      this.#kick();
    }
    this.#scheduleKeepalive(lease, interval);
  }

  /** One LeaseKeepAlive exchange; resolves with the TTL etcd reports (0 = the lease is gone). */
  async #keepaliveOnce(id: string, timeoutMs: number): Promise<number> {
    this.#stats.requests++;
    const stream = await this.#client.leaseClient.leaseKeepAlive();
    try {
      return await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("keepalive timed out")), timeoutMs);
        stream.on("data", (res) => {
          clearTimeout(timer);
          resolve(Number(res.TTL));
        });
        stream.on("error", (err) => {
          clearTimeout(timer);
          reject(err);
        });
        stream.on("end", () => {
          clearTimeout(timer);
          reject(new Error("keepalive stream ended"));
        });
        stream.write({ ID: id });
      });
    } finally {
      try {
        stream.end();
        (stream as unknown as { cancel?: () => void }).cancel?.();
      } catch {
        // already closed
      }
    }
  }

  // -------------------------------------------------------------------------
  // Watches.

  /** Watches the lock and its address records (a prefix watch, filtered to them). */
  #watchLock(claimed: Claimed, watchFrom: number): void {
    this.#stopLockWatcher();
    this.#stats.requests++;
    this.#lockWatcherConnects = 0;
    const watcher = this.#client.watch()
      .prefix(claimed.key)
      .startRevision(String(watchFrom))
      .watcher();
    this.#lockWatcher = watcher;
    const check = () => {
      this.#verifyRequested = true;
      this.#kick();
    };
    watcher.on("delete", (kv) => {
      if (this.#held !== claimed || Number(kv.mod_revision) < watchFrom) return;
      const key = kv.key.toString();
      if (key === claimed.key) this.#lose("its lock was deleted");
      else if (key.startsWith(claimed.key + "/")) check();
    });
    watcher.on("put", (kv) => {
      if (this.#held !== claimed) return;
      const key = kv.key.toString();
      if (key === claimed.key) {
        const ours = kv.lease === claimed.leaseId &&
          Number(kv.create_revision) === claimed.createRevision;
        if (!ours) check();
      } else if (key.startsWith(claimed.key + "/") && kv.lease !== claimed.leaseId) {
        check();
      }
    });
    watcher.on("connected", () => {
      // A reconnect may have skipped events: check the lock once.
      if (++this.#lockWatcherConnects > 1 && this.#held === claimed) check();
    });
    watcher.on("error", (err) => {
      this.#log.debug(`watch of ${claimed.key}: ${describe(err)}`);
      if (this.#held === claimed) check();
    });
  }

  #stopLockWatcher(): void {
    const watcher = this.#lockWatcher;
    this.#lockWatcher = undefined;
    watcher?.cancel().catch(() => {});
  }

  /** Sleeps until a lock in the zone is deleted or `ms` pass. */
  async #waitForSlot(ms: number): Promise<void> {
    if (!this.#slotWatcher) {
      this.#stats.requests++;
      const from = this.#base + "/";
      // No only("delete"): etcd3 1.1.2 maps it to the opposite filter.
      const watcher = this.#client.watch().prefix(from).watcher();
      watcher.on("delete", () => this.#kick());
      watcher.on("error", (err) => this.#log.debug(`watch of ${from}: ${describe(err)}`));
      this.#slotWatcher = watcher;
    }
    await this.#nap(ms);
  }

  #stopSlotWatcher(): void {
    const watcher = this.#slotWatcher;
    this.#slotWatcher = undefined;
    watcher?.cancel().catch(() => {});
  }

  // -------------------------------------------------------------------------
  // Release.

  async #release(revoke: boolean): Promise<void> {
    const held = this.#held;
    const wasRunning = this.#phase === "running";
    this.#phase = "released";
    this.#kick();
    await this.#firstClaim?.catch(() => {});
    await this.#driver;
    this.#clearKeepalive();
    await this.#keepaliveInFlight;
    const watchers = [this.#lockWatcher, this.#slotWatcher];
    this.#lockWatcher = undefined;
    this.#slotWatcher = undefined;
    await Promise.all(watchers.map((w) => w?.cancel().catch(() => {})));
    const lease = this.#lease;
    this.#lease = undefined;
    this.#held = undefined;
    this.#confirmed = false;
    const revoked = lease !== undefined && revoke && await this.#revoke(lease.id);
    if (held && wasRunning) {
      this.#log.info(
        revoked
          ? `released ${held.name} (ID ${held.id})`
          : `stopped holding ${held.name} (ID ${held.id}); it expires with lease ${held.leaseId}`,
      );
      this.#emit(undefined, "released");
    }
  }
}
