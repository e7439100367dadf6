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
import { KeyIndex, prefixRangeEnd } from "./key_index.ts";
import { LeaseTracker, type LeaseTtl, NO_LEASE } from "./lease_tracker.ts";
import type { KeyValue, KeyValueSource } from "./types.ts";

// ---------------------------------------------------------------------------
// Decoding.

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const lenientUtf8 = new TextDecoder("utf-8", { ignoreBOM: true });

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

  /**
   * @internal What the copy holds, for tests that check that its memory goes
   * with the keys: the index's structures (see KeyIndex.footprint) and the
   * leases tracked.
   */
  footprint(): { entries: number; sorted: number; pending: number; leases: number } {
    return { ...this.#index.footprint(), leases: this.#leases.size };
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
        // A revision bigger than etcd's request limit (a prefix of 100,000
        // keys deleted at once) comes in parts of about that size instead of
        // one message of many MB: the copy's memory peak stays small.
        fragment: true,
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
    if (res.fragment && res.events.length > 0) {
      // More of the last event's revision follows: the copy has reached only
      // the one before it, so that a watch resumed after a break gets the
      // whole revision again (applying its events twice changes nothing).
      const last = Number(res.events[res.events.length - 1].kv.mod_revision);
      revision = Math.max(this.#revision, Math.min(revision, last - 1));
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
