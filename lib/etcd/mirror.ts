/**
 * A watch-fed, in-memory copy of one etcd key prefix.
 *
 * One linearizable range read (paged) loads the prefix at revision R; a watch
 * from R+1 then applies every change. While etcd is unreachable the last copy
 * keeps serving; on reconnect the watch resumes after the last applied
 * revision, and when that revision has been compacted the prefix is listed
 * again and the copy replaced in one step. Lease TTLs are fetched in the
 * background so that {@link Mirror.leaseRemaining} never waits on etcd.
 *
 * The raw gRPC watch stream is used rather than etcd3's `Watcher`: that one
 * resumes from the revision in each response header, which in a catch-up
 * batch etcd sets to the store's current revision even when the batch was cut
 * short, so a disconnect could skip events; it also turns compaction into a
 * bare error without the compact revision.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Etcd3, IKeyValue, IWatchRequest, IWatchResponse } from "etcd3";
import type { Logger } from "../log.ts";
import { cleanEtcdError } from "./diagnose.ts";
import type { KeyValue, KeyValueSource } from "./types.ts";

// ---------------------------------------------------------------------------
// Key order and prefix helpers (pure).

/** Maps a UTF-16 code unit ≥ 0xD800 so that surrogates sort above U+E000..U+FFFF, as in UTF-8. */
function codePointOrderUnit(unit: number): number {
  return unit >= 0xe000 ? unit - 0x800 : unit + 0x2000;
}

/**
 * Compares keys in UTF-8 byte order (= code point order), which differs from
 * JS's UTF-16 code unit order only between astral characters and U+E000..U+FFFF.
 */
export function compareKeys(a: string, b: string): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) return codePointOrderUnit(x) - codePointOrderUnit(y);
      return x - y;
    }
  }
  return a.length - b.length;
}

/** Native comparison: equal to {@link compareKeys} while no key holds a code unit ≥ 0xD800. */
function compareAscii(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Code units for which UTF-16 and UTF-8 orders may disagree. */
const HIGH_UNITS = /[\ud800-\uffff]/;

/** The smallest byte string greater than every key starting with `prefix` (etcd's range_end). */
export function prefixRangeEnd(prefix: Uint8Array): Uint8Array {
  const end = Uint8Array.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.slice(0, i + 1);
    }
  }
  // Empty prefix or all 0xff: "\0" means "to the end of the keyspace".
  return Uint8Array.of(0);
}

const EMPTY: readonly KeyValue[] = Object.freeze([]);

/**
 * The mirrored entries: a map for exact lookups and a sorted key array for
 * prefix ranges. Inserts and deletes of a batch are merged into the array
 * once, at {@link KeyIndex.commit}.
 */
export class KeyIndex {
  #entries: Map<string, KeyValue>;
  #sorted: string[];
  #compare: (a: string, b: string) => number = compareAscii;
  #added: string[] = [];
  #removed: string[] = [];

  /** Builds an index from entries in any order (later duplicates win). */
  constructor(entries: Iterable<KeyValue> = []) {
    this.#entries = new Map();
    for (const kv of entries) this.#entries.set(kv.key, kv);
    this.#sorted = [...this.#entries.keys()];
    if (this.#sorted.some((k) => HIGH_UNITS.test(k))) this.#compare = compareKeys;
    this.#sorted.sort(this.#compare);
  }

  /** Number of keys. */
  get size(): number {
    return this.#entries.size;
  }

  /** The entry with exactly this key. */
  get(key: string): KeyValue | undefined {
    return this.#entries.get(key);
  }

  /** Every entry. */
  values(): IterableIterator<KeyValue> {
    return this.#entries.values();
  }

  /** Sets an entry; visible to `get` at once and to `range` after `commit`. */
  put(kv: KeyValue): KeyValue | undefined {
    const old = this.#entries.get(kv.key);
    this.#entries.set(kv.key, kv);
    if (!old) this.#added.push(kv.key);
    return old;
  }

  /** Removes an entry; returns what was there. */
  delete(key: string): KeyValue | undefined {
    const old = this.#entries.get(key);
    if (old) {
      this.#entries.delete(key);
      this.#removed.push(key);
    }
    return old;
  }

  /** Folds pending puts and deletes into the sorted array. */
  commit(): void {
    if (this.#added.length === 0 && this.#removed.length === 0) return;
    // Final membership is the map's; a key put and deleted in one batch is a no-op.
    const removed = new Set(this.#removed.filter((k) => !this.#entries.has(k)));
    const added = [...new Set(this.#added)].filter((k) => this.#entries.has(k));
    this.#added = [];
    this.#removed = [];
    if (this.#compare === compareAscii && added.some((k) => HIGH_UNITS.test(k))) {
      // The array is ASCII-ordered, which agrees with code point order for its keys.
      this.#compare = compareKeys;
    }
    const compare = this.#compare;
    const sorted = this.#sorted;
    if (added.length + removed.size <= 32) {
      for (const key of removed) {
        const i = this.#lowerBound(key);
        if (sorted[i] === key) sorted.splice(i, 1);
      }
      for (const key of added) {
        const i = this.#lowerBound(key);
        if (sorted[i] !== key) sorted.splice(i, 0, key);
      }
      return;
    }
    // Large batch: one linear merge instead of many O(n) splices.
    added.sort(compare);
    const merged: string[] = new Array(sorted.length + added.length);
    let n = 0;
    let j = 0;
    for (const key of sorted) {
      if (removed.has(key)) continue;
      while (j < added.length && compare(added[j], key) < 0) merged[n++] = added[j++];
      if (j < added.length && added[j] === key) j++; // already present
      merged[n++] = key;
    }
    while (j < added.length) merged[n++] = added[j++];
    merged.length = n;
    this.#sorted = merged;
  }

  /** Entries whose key starts with `prefix`, ascending by key bytes. */
  range(prefix: string): readonly KeyValue[] {
    const sorted = this.#sorted;
    let i = prefix === "" ? 0 : this.#lowerBound(prefix);
    if (i >= sorted.length || !sorted[i].startsWith(prefix)) return EMPTY;
    const result: KeyValue[] = [];
    for (; i < sorted.length; i++) {
      const key = sorted[i];
      if (!key.startsWith(prefix)) break;
      result.push(this.#entries.get(key)!);
    }
    return result;
  }

  /** Index of the first sorted key ≥ `key`. */
  #lowerBound(key: string): number {
    const sorted = this.#sorted;
    const compare = HIGH_UNITS.test(key) ? compareKeys : this.#compare;
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(sorted[mid], key) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

// ---------------------------------------------------------------------------
// Decoding.

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const lenientUtf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/** Lease ID of keys without a lease. */
const NO_LEASE = "0";

/** Decodes an etcd key; undefined when it is not valid UTF-8 (such keys are not mirrored). */
function decodeKey(bytes: Uint8Array): string | undefined {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Converts a wire KeyValue (values decoded leniently: invalid bytes become U+FFFD). */
function toKeyValue(key: string, kv: IKeyValue): KeyValue {
  return {
    key,
    value: lenientUtf8.decode(kv.value),
    lease: kv.lease === NO_LEASE || !kv.lease ? NO_LEASE : kv.lease,
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
  };
}

/** One line for an error, without stack (and without grpc-js's empty suffixes): see cleanEtcdError. */
export function describeError(err: unknown): string {
  return cleanEtcdError(err);
}

/** True for errors where etcd answered and said no (auth, permissions), as opposed to not answering. */
function isRefusal(err: unknown): boolean {
  return /etcdserver:|PERMISSION_DENIED|UNAUTHENTICATED|permission denied|authentication failed|cancelled the watch/i
    .test(describeError(err));
}

// ---------------------------------------------------------------------------
// Leases.

/** What the mirror knows about one lease. */
interface LeaseInfo {
  /** Keys in the copy that use it. */
  refs: number;
  /** performance.now() at which the lease is believed to expire; undefined until fetched. */
  expiresAt?: number;
  /** TTL the lease was granted with, seconds. */
  grantedTtl: number;
  /** performance.now() after which it should be asked again. */
  refreshAt: number;
  inFlight: boolean;
}

/** Answer of one LeaseTimeToLive call: remaining and granted seconds; ttl -1 when gone. */
export interface LeaseTtl {
  ttl: number;
  granted: number;
}

/** Options for {@link LeaseTracker}. */
export interface LeaseTrackerOptions {
  /** Asks etcd for one lease's TTL. */
  fetch: (lease: string) => Promise<LeaseTtl>;
  /** False while etcd is known to be unreachable (no point asking). */
  canFetch: () => boolean;
  log: Logger;
  /** Never ask about one lease more often than this (ms). */
  minRefreshMs?: number;
  /** Parallel TimeToLive calls. */
  concurrency?: number;
  /** Clock (ms, monotonic); tests may replace it. */
  now?: () => number;
}

/**
 * Keeps a local expiry time for every lease used by mirrored keys, fetched
 * once when a lease is first seen and refreshed in the background once less
 * than half its granted TTL is believed left (keep-alives by other clients
 * extend leases without us seeing it).
 */
export class LeaseTracker {
  #leases = new Map<string, LeaseInfo>();
  #timer?: ReturnType<typeof setTimeout>;
  #timerAt = Infinity;
  #running?: Promise<void>;
  #closed = false;
  #fetch: (lease: string) => Promise<LeaseTtl>;
  #canFetch: () => boolean;
  #log: Logger;
  #minRefreshMs: number;
  #concurrency: number;
  #now: () => number;
  #fetchErrors = 0;

  /** Creates an idle tracker. */
  constructor(options: LeaseTrackerOptions) {
    this.#fetch = options.fetch;
    this.#canFetch = options.canFetch;
    this.#log = options.log;
    this.#minRefreshMs = options.minRefreshMs ?? 1_000;
    this.#concurrency = options.concurrency ?? 32;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Number of leases in use by mirrored keys. */
  get size(): number {
    return this.#leases.size;
  }

  /** Failed TimeToLive calls so far. */
  get fetchErrors(): number {
    return this.#fetchErrors;
  }

  /** A key started using `lease`. */
  ref(lease: string): void {
    if (lease === NO_LEASE) return;
    const info = this.#leases.get(lease);
    if (info) {
      info.refs++;
      return;
    }
    this.#leases.set(lease, { refs: 1, grantedTtl: 0, refreshAt: 0, inFlight: false });
    // A short delay lets a burst of new keys share one round of calls.
    this.#schedule(this.#now() + 5);
  }

  /** A key stopped using `lease`; forgotten when no key uses it. */
  unref(lease: string): void {
    if (lease === NO_LEASE) return;
    const info = this.#leases.get(lease);
    if (!info) return;
    if (--info.refs <= 0) this.#leases.delete(lease);
  }

  /** Replaces all reference counts (after a full re-list), keeping what is known about kept leases. */
  reset(refs: Map<string, number>): void {
    const old = this.#leases;
    this.#leases = new Map();
    for (const [lease, count] of refs) {
      const known = old.get(lease);
      this.#leases.set(
        lease,
        known
          ? { ...known, refs: count }
          : { refs: count, grantedTtl: 0, refreshAt: 0, inFlight: false },
      );
    }
    this.#schedule(this.#now() + 5);
  }

  /** Whole seconds left on `lease` (rounded up, as etcd reports them); undefined while unknown. */
  remaining(lease: string): number | undefined {
    const expiresAt = this.#leases.get(lease)?.expiresAt;
    if (expiresAt === undefined) return undefined;
    return Math.max(0, Math.ceil((expiresAt - this.#now()) / 1000));
  }

  /** Asks about due leases now (after etcd came back). */
  kick(): void {
    this.#clearTimer();
    this.#schedule(this.#now());
  }

  /** Stops refreshing and waits for calls in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#clearTimer();
    await this.#running;
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  /** Arms the single timer for `at` unless it is already due earlier. */
  #schedule(at: number): void {
    if (this.#closed || this.#leases.size === 0) return;
    if (this.#running) return; // the round in progress reschedules when done
    if (at >= this.#timerAt) return;
    this.#clearTimer();
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#timerAt = Infinity;
      this.#running = this.#round().finally(() => {
        this.#running = undefined;
        this.#scheduleNext();
      });
    }, Math.max(0, at - this.#now()));
  }

  /** Arms the timer for the earliest lease due. */
  #scheduleNext(): void {
    let earliest = Infinity;
    for (const info of this.#leases.values()) {
      if (info.refreshAt < earliest) earliest = info.refreshAt;
    }
    // Rounds are at least 100 ms apart so that a scan over many leases stays cheap.
    if (earliest !== Infinity) this.#schedule(Math.max(earliest, this.#now() + 100));
  }

  /** One round: asks about every due lease, `concurrency` at a time. */
  async #round(): Promise<void> {
    if (this.#closed) return;
    const now = this.#now();
    if (!this.#canFetch()) {
      // Keep the old answers; look again shortly.
      for (const info of this.#leases.values()) {
        if (info.refreshAt <= now) info.refreshAt = now + this.#minRefreshMs;
      }
      return;
    }
    const due: string[] = [];
    for (const [lease, info] of this.#leases) {
      if (info.refreshAt <= now && !info.inFlight) due.push(lease);
    }
    let next = 0;
    const worker = async () => {
      while (next < due.length && !this.#closed) {
        await this.#refresh(due[next++]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#concurrency, due.length) }, worker));
  }

  /** Asks etcd about one lease and records the answer. */
  async #refresh(lease: string): Promise<void> {
    const info = this.#leases.get(lease);
    if (!info) return;
    info.inFlight = true;
    const sentAt = this.#now();
    try {
      const { ttl, granted } = await this.#fetch(lease).catch((err) => {
        // etcd 3.4 answers TTL -1 for a missing lease; other versions may fail instead.
        if (/lease not found/i.test(describeError(err))) return { ttl: -1, granted: 0 };
        throw err;
      });
      // The lease may have been forgotten or replaced meanwhile; update whatever is current.
      const current = this.#leases.get(lease);
      if (!current) return;
      const now = this.#now();
      if (ttl < 0) {
        // Gone: the watch will delete its keys shortly.
        current.expiresAt = sentAt;
        current.grantedTtl = 0;
        current.refreshAt = now + 5 * this.#minRefreshMs;
      } else {
        // etcd truncates to whole seconds; measuring from the send time errs short.
        current.expiresAt = sentAt + ttl * 1000;
        current.grantedTtl = granted;
        current.refreshAt = Math.max(
          now + this.#minRefreshMs,
          current.expiresAt - (granted * 1000) / 2,
        );
      }
    } catch (err) {
      this.#fetchErrors++;
      this.#log.debug(`lease ${lease}: TimeToLive failed: ${describeError(err)}`);
      const current = this.#leases.get(lease);
      if (current) current.refreshAt = this.#now() + this.#minRefreshMs;
    } finally {
      info.inFlight = false;
      const current = this.#leases.get(lease);
      if (current) current.inFlight = false;
    }
  }
}

// ---------------------------------------------------------------------------
// The mirror.

/** Health and progress of a mirror, for /ready and metrics. */
export interface MirrorStatus {
  /** The mirrored prefix. */
  prefix: string;
  /** The first full list has loaded (stays true during outages: the last copy serves). */
  ready: boolean;
  /** The last list or watch exchange with etcd succeeded and the watch is live. */
  connected: boolean;
  /** The copy equals etcd's content of the prefix at this revision. */
  revision: number;
  /** Newest cluster revision seen in any response header (≥ revision; the gap is other prefixes' writes). */
  clusterRevision: number;
  /** Keys mirrored. */
  keys: number;
  /** Distinct leases used by mirrored keys. */
  leases: number;
  /** Increases on every applied change. */
  generation: number;
  /** Failed list or watch attempts since start. */
  errors: number;
  /** Failed lease TimeToLive calls since start. */
  leaseErrors: number;
  /** Full lists after the first (compaction, or a cluster whose revision went back). */
  relists: number;
  /** Outages recovered from. */
  reconnects: number;
  /** Keys skipped because they are not valid UTF-8. */
  skippedKeys: number;
  /** Duration of the last full list, ms. */
  lastListMs?: number;
  /** Last error text. */
  lastError?: string;
  /** When the last error happened (epoch ms). */
  lastErrorAt?: number;
  /** When the last change was applied (epoch ms). */
  lastEventAt?: number;
  /** When etcd last sent anything on the list or watch (epoch ms). */
  lastResponseAt?: number;
  /** Since when etcd has been unreachable (epoch ms); absent while connected. */
  disconnectedSince?: number;
}

/** Tuning knobs; the defaults suit production. */
export interface MirrorOptions {
  /** The endpoints, for log lines (default: read from the client). */
  endpoints?: string;
  /** Keys per range page. */
  pageSize?: number;
  /** First retry delay, ms. */
  initialBackoffMs?: number;
  /** Longest retry delay, ms. */
  maxBackoffMs?: number;
  /** Minimum interval between TimeToLive calls for one lease, ms. */
  leaseMinRefreshMs?: number;
  /**
   * Fetch lease TTLs for {@link Mirror.leaseRemaining} (default true). A
   * copy used only for ownership checks turns it off: it would ask etcd
   * about every lease in the zone.
   */
  trackLeases?: boolean;
}

/** One applied batch of changes, for {@link Mirror.onChange} listeners. */
export interface MirrorChange {
  /** The entries removed, as they were (a re-list reports every key it no longer has). */
  readonly deleted: readonly KeyValue[];
  /** True when the batch is a whole new listing (after compaction or a replaced cluster). */
  readonly relisted: boolean;
}

/**
 * A watch-fed copy of an etcd prefix as the claim uses it: the data, the
 * revision it has reached, and its change batches.
 */
export interface ZoneCopy extends KeyValueSource {
  /** The etcd revision the copy reflects (0 before the first load). */
  readonly revision: number;
  /** Starts loading (idempotent); resolves after the first full load. */
  start(): Promise<void>;
  /** True once the first full load is done. */
  isReady(): boolean;
  /** Calls `listener` after each applied batch; returns the unsubscribe function. */
  onChange(listener: (change: MirrorChange) => void): () => void;
}

/** How one watch session ended without an error. */
type WatchEnd = "relist" | "closed" | "paused";

/** Thrown when a pinned list page hits a compacted revision: list again from scratch. */
class ListCompactedError extends Error {}

/** Reads the endpoints out of an etcd3 client (its options are not public). */
function endpointsOf(client: Etcd3): string {
  const hosts = (client as unknown as { options?: { hosts?: string | string[] } }).options?.hosts;
  return Array.isArray(hosts) ? hosts.join(", ") : hosts ?? "etcd";
}

/** A watch-fed copy of the keys under one prefix; see the module doc. */
export class Mirror implements ZoneCopy {
  /** The mirrored prefix. */
  readonly prefix: string;
  #client: Etcd3;
  #log: Logger;
  #endpoints: string;
  #prefixBytes: Buffer;
  #rangeEnd: Buffer;
  #pageSize: number;
  #initialBackoffMs: number;
  #maxBackoffMs: number;

  #index = new KeyIndex();
  #leases: LeaseTracker;
  #generation = 0;
  #revision = 0;
  #clusterRevision = 0;
  #listeners = new Set<(change: MirrorChange) => void>();
  #trackLeases: boolean;

  #startPromise?: Promise<void>;
  #resolveReady?: () => void;
  #ready = false;
  #closed = false;
  #runLoop?: Promise<void>;
  #wake?: () => void;
  #endWatch?: (how: WatchEnd) => void;
  #paused = false;
  #resumeWaiters: (() => void)[] = [];

  #connected = false;
  #outage?: { since: number; kind: string };
  #errors = 0;
  #relists = 0;
  #reconnects = 0;
  #skippedKeys = 0;
  #lastListMs?: number;
  #lastError?: string;
  #lastErrorAt?: number;
  #lastEventAt?: number;
  #lastResponseAt?: number;

  /** Creates an idle mirror of `prefix`; call {@link Mirror.start}. */
  constructor(client: Etcd3, prefix: string, log: Logger, options: MirrorOptions = {}) {
    this.prefix = prefix;
    this.#client = client;
    this.#log = log;
    this.#endpoints = options.endpoints ?? endpointsOf(client);
    this.#prefixBytes = Buffer.from(prefix, "utf8");
    this.#rangeEnd = Buffer.from(prefixRangeEnd(this.#prefixBytes));
    // etcd 3.4 counts the rest of the range for every page, so pages are large.
    this.#pageSize = options.pageSize ?? 20_000;
    this.#initialBackoffMs = options.initialBackoffMs ?? 100;
    // Short: a healed partition must be noticed within about a second.
    this.#maxBackoffMs = options.maxBackoffMs ?? 1_000;
    this.#trackLeases = options.trackLeases ?? true;
    this.#leases = new LeaseTracker({
      fetch: (lease) => this.#leaseTimeToLive(lease),
      canFetch: () => this.#connected,
      log,
      minRefreshMs: options.leaseMinRefreshMs,
    });
  }

  /** Increases on every applied change. */
  get generation(): number {
    return this.#generation;
  }

  /** The etcd revision the copy reflects (0 before the first load). */
  get revision(): number {
    return this.#revision;
  }

  /**
   * Starts loading and watching (idempotent). Resolves once the first full
   * list is loaded, or when the mirror is closed first; until then it keeps
   * retrying in the background.
   */
  start(): Promise<void> {
    if (!this.#startPromise) {
      this.#startPromise = new Promise((resolve) => (this.#resolveReady = resolve));
      if (this.#closed) this.#resolveReady!();
      else this.#runLoop = this.#run();
    }
    return this.#startPromise;
  }

  /** True once the first full list has loaded. */
  isReady(): boolean {
    return this.#ready;
  }

  /** A snapshot of health and progress. */
  status(): MirrorStatus {
    return {
      prefix: this.prefix,
      ready: this.#ready,
      connected: this.#connected,
      revision: this.#revision,
      clusterRevision: this.#clusterRevision,
      keys: this.#index.size,
      leases: this.#leases.size,
      generation: this.#generation,
      errors: this.#errors,
      leaseErrors: this.#leases.fetchErrors,
      relists: this.#relists,
      reconnects: this.#reconnects,
      skippedKeys: this.#skippedKeys,
      lastListMs: this.#lastListMs,
      lastError: this.#lastError,
      lastErrorAt: this.#lastErrorAt,
      lastEventAt: this.#lastEventAt,
      lastResponseAt: this.#lastResponseAt,
      disconnectedSince: this.#outage?.since,
    };
  }

  /** Calls `listener` after each applied batch of changes; returns the unsubscribe function. */
  onChange(listener: (change: MirrorChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Every entry whose key starts with `prefix`, ascending by key bytes. */
  range(prefix: string): readonly KeyValue[] {
    return this.#index.range(prefix);
  }

  /** The entry with exactly this key. */
  get(key: string): KeyValue | undefined {
    return this.#index.get(key);
  }

  /** Seconds left on `lease`, from the last TimeToLive answer; undefined while unknown. */
  leaseRemaining(lease: string): number | undefined {
    return this.#trackLeases ? this.#leases.remaining(lease) : undefined;
  }

  /** Stops watching and refreshing; the copy stays readable. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#resolveReady?.();
    this.#wake?.();
    this.#endWatch?.("closed");
    for (const resume of this.#resumeWaiters.splice(0)) resume();
    await this.#runLoop;
    await this.#leases.close();
    this.#listeners.clear();
  }

  /**
   * @internal Test hook: ends the watch and holds off reconnecting until
   * {@link Mirror.resumeWatch}, so a test can compact etcd behind its back.
   */
  async pauseWatch(): Promise<void> {
    this.#paused = true;
    this.#endWatch?.("paused");
    // Wait until the run loop has parked (it may first finish a list or a backoff).
    while (this.#resumeWaiters.length === 0 && !this.#closed) {
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** @internal Test hook: lets a paused mirror reconnect. */
  resumeWatch(): void {
    this.#paused = false;
    for (const resume of this.#resumeWaiters.splice(0)) resume();
  }

  // -- the loop ---------------------------------------------------------------

  /** List, then watch; on errors retry with backoff, on compaction list again. */
  async #run(): Promise<void> {
    let needList = true;
    let backoffMs = this.#initialBackoffMs;
    while (!this.#closed) {
      try {
        if (this.#paused) {
          this.#connected = false;
          await new Promise<void>((resume) => this.#resumeWaiters.push(resume));
          continue;
        }
        if (needList) {
          await this.#list();
          needList = false;
        } else if (!this.#connected) {
          // A cheap unary call first: it reports unreachable etcd clearly and
          // renews an expired auth token, which a stream would not.
          await this.#probe();
        }
        const end = await this.#watch(() => (backoffMs = this.#initialBackoffMs));
        if (end === "relist") needList = true;
      } catch (err) {
        if (this.#closed) break;
        if (err instanceof ListCompactedError) continue;
        this.#noteFailure(err);
        await this.#sleep(backoffMs * (0.8 + 0.4 * Math.random()));
        backoffMs = Math.min(backoffMs * 2, this.#maxBackoffMs);
      }
    }
    this.#connected = false;
  }

  /** Sleeps, waking early on close. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = undefined;
        done();
      };
    });
  }

  /** Reads the whole prefix at one revision (paged) and replaces the copy with it. */
  async #list(): Promise<void> {
    const started = performance.now();
    const entries: KeyValue[] = [];
    let skipped = 0;
    let revision = 0;
    let from: Buffer = this.#prefixBytes;
    while (true) {
      let page;
      try {
        page = await this.#client.kv.range({
          key: from,
          range_end: this.#rangeEnd,
          limit: this.#pageSize,
          // Later pages read the same revision as the first, so the copy is one snapshot.
          ...(revision ? { revision } : {}),
        });
      } catch (err) {
        if (revision && /compacted/i.test(describeError(err))) throw new ListCompactedError();
        throw err;
      }
      if (this.#closed) return;
      this.#lastResponseAt = Date.now();
      if (!revision) revision = Number(page.header.revision);
      this.#clusterRevision = Math.max(this.#clusterRevision, Number(page.header.revision));
      this.#markConnected();
      for (const kv of page.kvs) {
        const key = decodeKey(kv.key);
        if (key === undefined) skipped++;
        else entries.push(toKeyValue(key, kv));
      }
      if (!page.more || page.kvs.length === 0) break;
      // Next page starts just after the last key of this one.
      from = Buffer.concat([page.kvs[page.kvs.length - 1].key, Buffer.of(0)]);
    }
    this.#replace(entries, revision, skipped);
    this.#lastListMs = performance.now() - started;
    const first = !this.#ready;
    const summary = `${entries.length} keys under ${this.prefix} at revision ${revision} ` +
      `in ${Math.round(this.#lastListMs)} ms`;
    if (first) {
      this.#log.info(`loaded ${summary} from etcd at ${this.#endpoints}`);
      this.#ready = true;
      this.#resolveReady?.();
    } else {
      this.#relists++;
      this.#log.warning(`re-listed ${summary}`);
    }
    if (skipped > 0) {
      this.#log.warning(`skipped ${skipped} keys under ${this.prefix} that are not valid UTF-8`);
    }
  }

  /** Swaps in a freshly listed copy. */
  #replace(entries: KeyValue[], revision: number, skipped: number): void {
    const previous = this.#index;
    this.#index = new KeyIndex(entries);
    const deleted: KeyValue[] = [];
    for (const kv of previous.values()) if (!this.#index.get(kv.key)) deleted.push(kv);
    this.#skippedKeys = skipped;
    const leaseRefs = new Map<string, number>();
    if (this.#trackLeases) {
      for (const kv of entries) {
        if (kv.lease !== NO_LEASE) leaseRefs.set(kv.lease, (leaseRefs.get(kv.lease) ?? 0) + 1);
      }
    }
    this.#leases.reset(leaseRefs);
    this.#revision = revision;
    this.#changed({ deleted, relisted: true });
  }

  /** Checks that etcd answers (one key, keys only). */
  async #probe(): Promise<void> {
    const res = await this.#client.kv.range({
      key: this.#prefixBytes,
      range_end: this.#rangeEnd,
      limit: 1,
      keys_only: true,
    });
    this.#lastResponseAt = Date.now();
    this.#clusterRevision = Math.max(this.#clusterRevision, Number(res.header.revision));
  }

  /**
   * Runs one watch session from revision+1. Resolves when it ends by
   * compaction, close or pause; rejects on stream errors.
   */
  async #watch(onCreated: () => void): Promise<WatchEnd> {
    const stream = await this.#client.watchClient.watch();
    let finish!: (how: WatchEnd | Error) => void;
    let settled = false;
    const ended = new Promise<WatchEnd>((resolve, reject) => {
      finish = (how) => {
        if (settled) return;
        settled = true;
        this.#endWatch = undefined;
        if (how instanceof Error) reject(how);
        else resolve(how);
      };
    });
    this.#endWatch = (how) => finish(how);
    if (this.#closed || this.#paused) finish(this.#closed ? "closed" : "paused");

    stream.on("data", (res: IWatchResponse) => {
      if (settled) return; // responses still in flight after the session ended
      try {
        this.#lastResponseAt = Date.now();
        this.#clusterRevision = Math.max(this.#clusterRevision, Number(res.header.revision));
        if (res.canceled) {
          const compactRevision = Number(res.compact_revision);
          if (compactRevision > 0) {
            this.#log.warning(
              `watch of ${this.prefix} from revision ${this.#revision + 1} was compacted ` +
                `(compact revision ${compactRevision}); listing again`,
            );
            finish("relist");
          } else {
            finish(
              new Error(`etcd cancelled the watch: ${res.cancel_reason || "no reason given"}`),
            );
          }
          return;
        }
        if (res.created) {
          const current = Number(res.header.revision);
          if (current < this.#revision) {
            // A restored or replaced cluster: our revision means nothing there.
            this.#log.warning(
              `etcd's revision went back from ${this.#revision} to ${current}; listing ${this.prefix} again`,
            );
            this.#markConnected();
            finish("relist");
            return;
          }
          this.#markConnected();
          onCreated();
          return;
        }
        this.#apply(res);
      } catch (err) {
        this.#log.error(`applying watch events for ${this.prefix}: ${describeError(err)}`);
        finish(err instanceof Error ? err : new Error(String(err)));
      }
    });
    // An 'error' listener must stay attached: cancel() below emits one.
    stream.on("error", (err: Error) => finish(err));
    stream.on("end", () => finish(new Error("watch stream ended")));
    const request: IWatchRequest = {
      create_request: {
        key: this.#prefixBytes,
        range_end: this.#rangeEnd,
        start_revision: this.#revision + 1,
        // Progress notifications advance the revision while the prefix is quiet.
        progress_notify: true,
      },
    };
    if (!settled) stream.write(request);
    try {
      return await ended;
    } finally {
      stream.cancel();
    }
  }

  /** Applies one watch response's events as one batch. */
  #apply(res: IWatchResponse): void {
    if (res.events.length === 0) {
      // A progress notification for our watcher (etcd sends these only once it
      // has caught up), not the reply to a progress request (watch_id -1).
      if (res.watch_id !== "-1") {
        this.#revision = Math.max(this.#revision, Number(res.header.revision));
      }
      return;
    }
    let revision = this.#revision;
    let applied = 0;
    const deleted: KeyValue[] = [];
    const track = this.#trackLeases;
    for (const event of res.events) {
      const eventRevision = Number(event.kv.mod_revision);
      if (eventRevision <= this.#revision) continue; // already in the copy
      revision = Math.max(revision, eventRevision);
      const key = decodeKey(event.kv.key);
      if (key === undefined) {
        if (String(event.type).toLowerCase() === "put") {
          this.#log.warning(`skipped a key under ${this.prefix} that is not valid UTF-8`);
        }
        continue;
      }
      applied++;
      if (String(event.type).toLowerCase() === "delete") {
        const old = this.#index.delete(key);
        if (old) {
          deleted.push(old);
          if (track) this.#leases.unref(old.lease);
        }
      } else {
        const kv = toKeyValue(key, event.kv);
        const old = this.#index.put(kv);
        if (track && old?.lease !== kv.lease) {
          if (old) this.#leases.unref(old.lease);
          this.#leases.ref(kv.lease);
        }
      }
    }
    this.#revision = revision;
    if (applied === 0) return;
    this.#index.commit();
    this.#lastEventAt = Date.now();
    this.#changed({ deleted, relisted: false });
  }

  /** Bumps the generation and tells listeners. */
  #changed(change: MirrorChange): void {
    this.#generation++;
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (err) {
        this.#log.error(`change listener for ${this.prefix} failed: ${describeError(err)}`);
      }
    }
  }

  /** Asks etcd for one lease's TTL. */
  async #leaseTimeToLive(lease: string): Promise<LeaseTtl> {
    const res = await this.#client.leaseClient.leaseTimeToLive({ ID: lease });
    return { ttl: Number(res.TTL), granted: Number(res.grantedTTL) };
  }

  // -- connection state and logging -----------------------------------------

  /** Records a successful exchange; logs the end of an outage once. */
  #markConnected(): void {
    if (this.#connected) return;
    this.#connected = true;
    if (this.#outage) {
      const seconds = ((Date.now() - this.#outage.since) / 1000).toFixed(1);
      this.#log.info(
        this.#ready
          ? `reconnected to etcd at ${this.#endpoints} after ${seconds}s; ` +
            `${this.prefix} continues from revision ${this.#revision + 1}`
          : `connected to etcd at ${this.#endpoints} after ${seconds}s`,
      );
      this.#outage = undefined;
      this.#reconnects++;
    }
    this.#leases.kick();
  }

  /** Records a failure; logs once per outage (and again if the kind of failure changes). */
  #noteFailure(err: unknown): void {
    const reason = describeError(err);
    this.#errors++;
    this.#connected = false;
    this.#lastError = reason;
    this.#lastErrorAt = Date.now();
    const kind = isRefusal(err) ? "refused" : "unreachable";
    if (this.#outage?.kind === kind) {
      this.#log.debug(`etcd at ${this.#endpoints}: ${reason}; retrying`);
      return;
    }
    this.#outage = { since: this.#outage?.since ?? Date.now(), kind };
    const serving = this.#ready ? ` (serving the last copy of ${this.prefix})` : "";
    if (kind === "unreachable") {
      this.#log.error(`cannot reach etcd at ${this.#endpoints}: ${reason}; retrying${serving}`);
    } else {
      this.#log.error(
        `cannot read ${this.prefix} from etcd at ${this.#endpoints}: ${reason}; retrying${serving}`,
      );
    }
  }
}
