/**
 * Local expiry times for the leases that mirrored keys use, so that a
 * lookup can give a lease's remaining TTL without waiting on etcd.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { cleanEtcdError } from "./diagnose.ts";

/** Lease ID of keys without a lease. */
export const NO_LEASE = "0";

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
  /** Seconds the lease has left; -1 when etcd no longer has it. */
  ttl: number;
  /** Seconds it was granted with (what a keep-alive renews it to). */
  granted: number;
}

/** Options for {@link LeaseTracker}. */
export interface LeaseTrackerOptions {
  /** Asks etcd for one lease's TTL. */
  fetch: (lease: string) => Promise<LeaseTtl>;
  /** False while etcd is known to be unreachable (no point asking). */
  canFetch: () => boolean;
  /** Where failed TimeToLive calls are reported. */
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
        if (/lease not found/i.test(cleanEtcdError(err))) return { ttl: -1, granted: 0 };
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
      this.#log.debug(`lease ${lease}: TimeToLive failed: ${cleanEtcdError(err)}`);
      const current = this.#leases.get(lease);
      if (current) current.refreshAt = this.#now() + this.#minRefreshMs;
    } finally {
      info.inFlight = false;
      const current = this.#leases.get(lease);
      if (current) current.inFlight = false;
    }
  }
}
