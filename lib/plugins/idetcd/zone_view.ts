/**
 * The claim's reading of the zone from its watch-fed copy: the locks, the
 * remembered IDs and the queue's assignment of free IDs, with no etcd read.
 *
 * Why it is sound: a claimer joins the queue (one put) and then reads the
 * copy once the copy has reached that put's revision. The copy equals etcd's
 * zone at the revision it reports, so the reading is the snapshot a listing
 * at that revision would have returned, and every claimer computes the same
 * assignment from it ({@link allocateIds}: queue order, each its first free
 * preference, else the lowest free ID). The assignment of a waiting claimer
 * does not move as the copy advances: a claimer that finishes removes its
 * queue entry and its ID in one transaction, and newer entries come after it.
 * A reading can still be stale (a lock freed meanwhile); the claim's compare
 * (`create_revision == 0`) keeps every ID to one holder whatever the reading
 * said, and a lost race reads again once the copy shows the winner.
 *
 * Why it scales: etcd sends a claim its own replies only (grant, two
 * transactions, the winner's lock on a lost race), O(1) bytes whatever the
 * number of claimers; the copy's watch is the node's DNS copy anyway. The
 * reading costs O(zone) CPU, so claimers sharing one view (a process holding
 * many claimers, as the benchmark does) share each reading, and readings are
 * spaced by a few times their own cost while claimers wait: CPU stays a
 * fraction of one core at 10,000 claimers.
 *
 * @module
 */

import type { MirrorChange, ZoneCopy } from "../../etcd/mirror.ts";
import type { KeyValue } from "../../etcd/types.ts";
import type { NamePattern } from "./pattern.ts";
import type { RoleMap } from "./roles.ts";
import { parseSlotKey } from "./records.ts";
import { type ParseCache, readZone, type ZoneSnapshot } from "./txns.ts";

/** A {@link ZoneSnapshot} read from the copy, with the revision it equals etcd at. */
export interface ZoneReading extends ZoneSnapshot {
  /** The etcd revision the snapshot equals (the copy had applied every event up to it). */
  revision: number;
}

/**
 * Pause between two change batches handed to the claimers of one view, per
 * claimer listening, ms: one claimer (a node) gets every batch at once;
 * 10,000 in one process get about five a second.
 */
const FAN_OUT_MS_PER_LISTENER = 0.02;

/** Shortest pause between two readings while claimers wait, ms. */
const MIN_SPACING_MS = 2;
/** Spacing between readings as a multiple of the last reading's cost. */
const SPACING_FACTOR = 3;

interface Waiter {
  revision: number;
  resolve: (reading: ZoneReading | undefined) => void;
}

/** One zone's readings for claimers of one pattern, limit and roles; see the module doc. */
export class ZoneView {
  /** The etcd key path of the zone (`/skydns/local/tf`). */
  readonly zonePath: string;
  /** The name pattern its claimers claim. */
  readonly pattern: NamePattern;
  /** The highest ID. */
  readonly limit: number;
  /** The roles and their ID ranges, when the Corefile gives any. */
  readonly roles?: RoleMap;
  readonly #copy: ZoneCopy;
  readonly #cache: ParseCache = new WeakMap();
  #last?: { generation: number; reading: ZoneReading; at: number; costMs: number };
  #waiters = new Set<Waiter>();
  #unsubscribe?: () => void;
  #timer?: ReturnType<typeof setTimeout>;
  #coalesced?: CoalescedCopy;
  /** Readings computed, for tests and the benchmark. */
  readings = 0;
  /** The newest listing read from etcd by {@link ZoneView.listed}, and one under way. */
  #listed?: ZoneReading;
  #listing?: Promise<ZoneReading>;
  /** Listings read from etcd because the copy lagged, for tests and the benchmark. */
  listings = 0;

  /** A view of `copy` (which the caller starts and closes). */
  constructor(
    copy: ZoneCopy,
    zonePath: string,
    pattern: NamePattern,
    limit: number,
    roles?: RoleMap,
  ) {
    this.#copy = copy;
    this.zonePath = zonePath;
    this.pattern = pattern;
    this.limit = limit;
    this.roles = roles;
  }

  /**
   * The copy as the claimers' ownership monitors see it: the same data, with
   * change batches coalesced while many claimers listen (see
   * {@link CoalescedCopy}).
   */
  get copy(): ZoneCopy {
    this.#coalesced ??= new CoalescedCopy(this.#copy, (kv) => {
      let parsed = this.#cache.get(kv);
      if (!parsed) {
        parsed = { slot: parseSlotKey(this.zonePath, this.pattern, kv.key) };
        this.#cache.set(kv, parsed);
      }
      return parsed.slot?.kind === "lock";
    });
    return this.#coalesced;
  }

  /** True when claimers with these settings may share this view. */
  fits(zonePath: string, pattern: NamePattern, limit: number, roles?: RoleMap): boolean {
    return zonePath === this.zonePath && pattern.source === this.pattern.source &&
      limit === this.limit && (roles ?? undefined) === (this.roles ?? undefined);
  }

  /**
   * A reading at a revision ≥ `revision`: at once when the last one is new
   * enough, else once the copy has got there. Undefined after `timeoutMs` or
   * when `signal` aborts.
   */
  read(
    revision: number,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<ZoneReading | undefined> {
    const fresh = this.#fresh();
    if (fresh && fresh.revision >= revision) return Promise.resolve(fresh);
    if (signal?.aborted || timeoutMs <= 0) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const done = (reading: ZoneReading | undefined) => {
        if (!this.#waiters.delete(waiter)) return;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        if (this.#waiters.size === 0) this.#idle();
        resolve(reading);
      };
      const onAbort = () => done(undefined);
      const waiter: Waiter = { revision, resolve: done };
      this.#waiters.add(waiter);
      const timer = setTimeout(() => done(undefined), timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#unsubscribe ??= this.#copy.onChange(() => this.#maybeSchedule());
      this.#maybeSchedule();
    });
  }

  /**
   * A reading at a revision ≥ `revision` listed from etcd by `list`, for a
   * claimer whose copy lags. Claimers sharing the view share listings: one
   * under way or already read that is new enough serves them all (a listing
   * is the zone at its revision, as a reading of the copy is), so a lagging
   * copy costs etcd a few listings, not one per waiting claimer. A failed
   * listing fails only its own caller's wait; the others list again.
   */
  async listed(
    revision: number,
    list: () => Promise<{ kvs: readonly KeyValue[]; revision: number }>,
  ): Promise<ZoneReading> {
    let awaited: Promise<ZoneReading> | undefined;
    while (true) {
      if (this.#listed && this.#listed.revision >= revision) return this.#listed;
      const underWay = this.#listing;
      if (!underWay || underWay === awaited) break;
      awaited = underWay;
      const reading = await underWay.catch(() => undefined);
      if (reading && reading.revision >= revision) return reading;
    }
    const mine = (async () => {
      const listed = await list();
      const reading: ZoneReading = {
        ...readZone(listed.kvs, this.zonePath, this.pattern, this.limit, this.roles, this.#cache),
        revision: listed.revision,
      };
      this.listings++;
      if (!this.#listed || this.#listed.revision < reading.revision) this.#listed = reading;
      return reading;
    })();
    this.#listing = mine;
    try {
      return await mine;
    } finally {
      if (this.#listing === mine) this.#listing = undefined;
    }
  }

  /** The last reading when the copy has not changed since (relabelled to the copy's revision). */
  #fresh(): ZoneReading | undefined {
    const last = this.#last;
    if (!last) return undefined;
    if (last.generation === this.#copy.generation && this.#copy.revision > last.reading.revision) {
      // Progress without changes: the same content is etcd's at the newer revision too.
      last.reading = { ...last.reading, revision: this.#copy.revision };
    }
    return last.reading;
  }

  /** Schedules a reading when the copy has reached some waiter's revision. */
  #maybeSchedule(): void {
    if (this.#timer !== undefined || this.#waiters.size === 0) return;
    const reached = this.#copy.revision;
    let due = false;
    for (const w of this.#waiters) {
      if (w.revision <= reached) {
        due = true;
        break;
      }
    }
    if (!due) return;
    const last = this.#last;
    const at = last ? last.at + Math.max(MIN_SPACING_MS, SPACING_FACTOR * last.costMs) : 0;
    const delay = Math.max(0, at - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#flush();
    }, delay);
  }

  /** Reads the copy once and hands the reading to every waiter it satisfies. */
  #flush(): void {
    if (this.#waiters.size === 0) return;
    const reading = this.#last?.generation === this.#copy.generation
      ? this.#fresh()!
      : this.#readNow();
    for (const w of [...this.#waiters]) if (w.revision <= reading.revision) w.resolve(reading);
    this.#maybeSchedule();
  }

  #readNow(): ZoneReading {
    const started = performance.now();
    const generation = this.#copy.generation;
    const revision = this.#copy.revision;
    const snapshot = readZone(
      this.#copy.range(this.zonePath + "/"),
      this.zonePath,
      this.pattern,
      this.limit,
      this.roles,
      this.#cache,
    );
    const reading = { ...snapshot, revision };
    const at = performance.now();
    this.#last = { generation, reading, at, costMs: at - started };
    this.readings++;
    return reading;
  }

  /** No one waits: stop listening to the copy (held claimers cost nothing here). */
  #idle(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * A {@link ZoneCopy} whose change batches reach its listeners coalesced: at
 * once while the last delivery is older than {@link FAN_OUT_MS_PER_LISTENER}
 * per listener, else together at that point, with the lock deletions of every
 * batch in between (the only deletions an ownership monitor acts on). Reads
 * go to the copy itself. With one listener (a node) every batch is delivered
 * as it comes; with 10,000 claimers in one process, each judging its lock on
 * every batch would cost 10,000 × batches.
 */
export class CoalescedCopy implements ZoneCopy {
  readonly #copy: ZoneCopy;
  readonly #isLock: (kv: KeyValue) => boolean;
  readonly #listeners = new Set<(change: MirrorChange) => void>();
  #unsubscribe?: () => void;
  #deleted: KeyValue[] = [];
  #relisted = false;
  #pending = false;
  #lastAt = -Infinity;
  #timer?: ReturnType<typeof setTimeout>;

  /** Wraps `copy`; `isLock` tells the lock keys among deleted entries. */
  constructor(copy: ZoneCopy, isLock: (kv: KeyValue) => boolean) {
    this.#copy = copy;
    this.#isLock = isLock;
  }

  /** See {@link ZoneCopy.revision}. */
  get revision(): number {
    return this.#copy.revision;
  }

  /** See {@link ZoneCopy.generation}. */
  get generation(): number {
    return this.#copy.generation;
  }

  /** See {@link ZoneCopy.start}. */
  start(): Promise<void> {
    return this.#copy.start();
  }

  /** See {@link ZoneCopy.isReady}. */
  isReady(): boolean {
    return this.#copy.isReady();
  }

  /** See {@link ZoneCopy.range}. */
  range(prefix: string): readonly KeyValue[] {
    return this.#copy.range(prefix);
  }

  /** See {@link ZoneCopy.get}. */
  get(key: string): KeyValue | undefined {
    return this.#copy.get(key);
  }

  /** See {@link ZoneCopy.leaseRemaining}. */
  leaseRemaining(lease: string): number | undefined {
    return this.#copy.leaseRemaining(lease);
  }

  /** Calls `listener` with coalesced batches; returns the unsubscribe function. */
  onChange(listener: (change: MirrorChange) => void): () => void {
    this.#listeners.add(listener);
    this.#unsubscribe ??= this.#copy.onChange((change) => this.#collect(change));
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size > 0) return;
      this.#unsubscribe?.();
      this.#unsubscribe = undefined;
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#pending = false;
      this.#deleted = [];
    };
  }

  #collect(change: MirrorChange): void {
    for (const kv of change.deleted) if (this.#isLock(kv)) this.#deleted.push(kv);
    this.#relisted ||= change.relisted;
    this.#pending = true;
    if (this.#timer !== undefined) return;
    const due = this.#lastAt + FAN_OUT_MS_PER_LISTENER * this.#listeners.size;
    const now = performance.now();
    if (now >= due) return this.#deliver();
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#deliver();
    }, due - now);
  }

  #deliver(): void {
    if (!this.#pending) return;
    const change: MirrorChange = { deleted: this.#deleted, relisted: this.#relisted };
    this.#deleted = [];
    this.#relisted = false;
    this.#pending = false;
    this.#lastAt = performance.now();
    for (const listener of [...this.#listeners]) listener(change);
  }
}
