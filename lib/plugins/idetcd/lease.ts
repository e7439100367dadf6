/**
 * The lease keeper: one etcd lease, granted, kept alive and revoked, and the
 * local deadline that fencing hangs on.
 *
 * The deadline is the latest instant the lease can still be alive in etcd:
 * the time the last acknowledged keep-alive was *sent* plus the TTL etcd
 * granted (etcd restarts the TTL when it receives the keep-alive, which is
 * later). It is kept on a clock that counts a suspended machine's sleep
 * ({@link suspendAwareClock}): a wall-clock step or NTP never moves it, and a
 * resumed VM finds it passed instead of pushed later. The keeper stops
 * vouching at `deadline - margin` ("expiring"), whether or not a keep-alive
 * has failed yet. Keep-alives go every `(ttl - margin) / 3`, retried every
 * 500 ms on failure, so with etcd reachable the deadline moves away long
 * before the margin is reached.
 *
 * @module
 */

import { cleanEtcdError } from "../../etcd/diagnose.ts";
import { classifyFailure, type EtcdKv } from "../../etcd/kv.ts";
import type { Logger } from "../../log.ts";

/** A clock in milliseconds and timers on it (injected in unit tests). */
export interface Clock {
  /**
   * Milliseconds from an arbitrary origin; must never go back (the real clock,
   * {@link suspendAwareClock}, also counts time the machine was suspended).
   */
  now(): number;
  /**
   * A cheaper reading for hot paths (every DNS query), allowed to lag a
   * machine's suspend until the next {@link Clock.now}; `now` when absent.
   */
  fast?(): number;
  /** Calls `fn` once after `ms` on this clock; returns a handle for {@link Clock.clearTimeout}. */
  setTimeout(fn: () => void, ms: number): number;
  /** Cancels a timer {@link Clock.setTimeout} set; a handle that already fired is ignored. */
  clearTimeout(handle: number): void;
}

/** Reads CLOCK_BOOTTIME via /proc/uptime (10 ms steps); undefined where it cannot. */
function readUptimeMs(): number | undefined {
  try {
    const text = Deno.readTextFileSync("/proc/uptime");
    const seconds = Number(text.slice(0, text.indexOf(" ")));
    return Number.isFinite(seconds) ? seconds * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A monotonic clock that also counts time the machine spent suspended:
 * performance.now() (CLOCK_MONOTONIC) stops during a suspend while etcd's
 * clock runs on, so on Linux the reading is never behind /proc/uptime
 * (CLOCK_BOOTTIME). Never goes back.
 */
export function suspendAwareClock(): Clock {
  let uptimeUsable = readUptimeMs() !== undefined;
  const startPerf = performance.now();
  let offset = uptimeUsable ? readUptimeMs()! - startPerf : 0;
  let last = startPerf + offset;
  return {
    now() {
      const perf = performance.now();
      let value = perf + offset;
      if (uptimeUsable) {
        const up = readUptimeMs();
        if (up === undefined) uptimeUsable = false;
        else if (up > value + 20) {
          // The machine slept: time passed that CLOCK_MONOTONIC did not count.
          offset += up - value;
          value = up;
        }
      }
      last = Math.max(last, value);
      return last;
    },
    fast: () => Math.max(last, performance.now() + offset),
    setTimeout: (fn, ms) => setTimeout(fn, ms) as unknown as number,
    clearTimeout: (handle) => clearTimeout(handle),
  };
}

/** What the keeper tells its owner. */
export interface LeaseEvents {
  /** `deadline - margin` passed without a newer acknowledged keep-alive. */
  expiring(lease: HeldLease): void;
  /** etcd says the lease is gone (TTL 0 or not found). */
  gone(lease: HeldLease): void;
  /** A keep-alive was acknowledged after the keeper had reported "expiring". */
  renewed(lease: HeldLease): void;
}

/** A lease as the keeper holds it. */
export interface HeldLease {
  /** Decimal lease ID. */
  readonly id: string;
  /** TTL etcd granted, seconds. */
  readonly ttl: number;
}

/** Settings of a {@link LeaseKeeper}. */
export interface LeaseKeeperOptions {
  /** TTL to ask for, seconds. */
  ttlSeconds: number;
  /** How long before the deadline the keeper stops vouching, ms. */
  marginMs: number;
}

/** Retry pause after a failed keep-alive, ms. */
const RETRY_MS = 500;
/** Longest wait for one keep-alive answer, ms. */
const MAX_KEEPALIVE_WAIT_MS = 2_000;
/** How often the deadline is checked against the clock while held (catches a resumed VM), ms. */
const WATCHDOG_MS = 200;

/**
 * The default fencing margin for a lease of `ttlSeconds`: a quarter of the
 * lease, at least 1 s, at most half the lease.
 */
export function defaultMarginMs(ttlSeconds: number): number {
  const ttlMs = ttlSeconds * 1000;
  return Math.min(Math.max(1_000, ttlMs / 4), ttlMs / 2);
}

/** One lease and its keep-alives; see the module doc. */
export class LeaseKeeper {
  readonly #kv: EtcdKv;
  readonly #options: LeaseKeeperOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #events: LeaseEvents;
  #lease?: HeldLease;
  /** Clock time (ms) after which the lease may be gone in etcd. */
  #deadline = -Infinity;
  #expiredReported = false;
  #failingSince?: number;
  #warned = false;
  #timer?: number;
  #watchdog?: number;
  #inFlight?: Promise<void>;
  #stopped = false;

  /** An idle keeper; nothing happens until {@link LeaseKeeper.grant} or adopt. */
  constructor(
    kv: EtcdKv,
    options: LeaseKeeperOptions,
    clock: Clock,
    log: Logger,
    events: LeaseEvents,
  ) {
    this.#kv = kv;
    this.#options = options;
    this.#clock = clock;
    this.#log = log;
    this.#events = events;
  }

  /** The lease kept now, if any. */
  get lease(): HeldLease | undefined {
    return this.#lease;
  }

  /** Clock time until which the name may be vouched for (deadline - margin). */
  get vouchUntil(): number {
    return this.#deadline - this.#options.marginMs;
  }

  /** Clock time after which the lease may be gone in etcd. */
  get deadline(): number {
    return this.#deadline;
  }

  /**
   * True while the deadline minus the margin is still ahead. Cheap enough for
   * every query (no clock file read); a suspend is caught by the watchdog
   * within its period after the machine resumes.
   */
  vouches(): boolean {
    if (this.#lease === undefined) return false;
    const now = this.#clock.fast ? this.#clock.fast() : this.#clock.now();
    return now < this.vouchUntil;
  }

  /** Grants a new lease (dropping any current one without revoking it) and keeps it alive. */
  async grant(): Promise<HeldLease> {
    const sent = this.#clock.now();
    const granted = await this.#kv.grant(this.#options.ttlSeconds);
    const lease = { id: granted.id, ttl: granted.ttl };
    this.#hold(lease, sent);
    return lease;
  }

  /**
   * Adopts a lease an earlier instance of this node left behind (a restart
   * while etcd refuses grants): one keep-alive proves it is alive; undefined
   * when it is not.
   */
  async adopt(id: string): Promise<HeldLease | undefined> {
    const sent = this.#clock.now();
    const ttl = await this.#kv.keepAlive(id, MAX_KEEPALIVE_WAIT_MS);
    if (ttl <= 0) return undefined;
    const lease = { id, ttl };
    this.#hold(lease, sent);
    return lease;
  }

  /** Forgets the current lease (etcd said it is gone, or it is being replaced). */
  drop(): void {
    this.#lease = undefined;
    this.#deadline = -Infinity;
    this.#clearTimers();
  }

  /** Revokes the current lease; false when etcd could not be told (it then expires). */
  async revoke(timeoutMs = 3_000): Promise<boolean> {
    const lease = this.#lease;
    this.drop();
    if (!lease) return true;
    try {
      await this.#kv.revoke(lease.id, timeoutMs);
      return true;
    } catch (err) {
      this.#log.warning(
        `revoking lease ${lease.id} failed: ${oneLine(err)}; it expires with its TTL`,
      );
      return false;
    }
  }

  /** Stops keep-alives for good (the lease is left to the caller or to expiry). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#clearTimers();
    await this.#inFlight;
  }

  #hold(lease: HeldLease, sent: number): void {
    this.#clearTimers();
    this.#lease = lease;
    this.#deadline = sent + lease.ttl * 1000;
    this.#expiredReported = false;
    this.#failingSince = undefined;
    this.#warned = false;
    this.#schedule(this.#interval());
    this.#armWatchdog();
  }

  /** Keep-alive period: three tries fit before the margin. */
  #interval(): number {
    const lease = this.#lease;
    if (!lease) return RETRY_MS;
    return Math.max(100, (lease.ttl * 1000 - this.#options.marginMs) / 3);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.#inFlight = this.#keepalive().finally(() => (this.#inFlight = undefined));
    }, ms);
  }

  /** Checks the deadline on a short period, so a late timer (a resumed VM) cannot hide it. */
  #armWatchdog(): void {
    if (this.#stopped) return;
    if (this.#watchdog !== undefined) this.#clock.clearTimeout(this.#watchdog);
    this.#watchdog = this.#clock.setTimeout(() => {
      this.#watchdog = undefined;
      this.#checkDeadline();
      if (this.#lease) this.#armWatchdog();
    }, Math.min(WATCHDOG_MS, this.#options.marginMs / 4));
  }

  #checkDeadline(): void {
    const lease = this.#lease;
    if (!lease || this.#expiredReported) return;
    if (this.#clock.now() >= this.vouchUntil) {
      this.#expiredReported = true;
      this.#events.expiring(lease);
    }
  }

  #clearTimers(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    if (this.#watchdog !== undefined) this.#clock.clearTimeout(this.#watchdog);
    this.#timer = undefined;
    this.#watchdog = undefined;
  }

  async #keepalive(): Promise<void> {
    const lease = this.#lease;
    if (!lease || this.#stopped) return;
    const interval = this.#interval();
    const sent = this.#clock.now();
    let ttl: number;
    try {
      ttl = await this.#kv.keepAlive(
        lease.id,
        Math.min(MAX_KEEPALIVE_WAIT_MS, Math.max(RETRY_MS, interval)),
      );
    } catch (err) {
      if (this.#lease !== lease) return;
      if (classifyFailure(err) === "lease-not-found") return this.#gone(lease);
      this.#failingSince ??= sent;
      // One failed exchange on a flaky member is retried quietly; a lease at risk is told once.
      if (!this.#warned && sent - this.#failingSince >= interval) {
        this.#warned = true;
        const left = Math.max(0, this.#deadline - this.#clock.now()) / 1000;
        this.#log.warning(
          `keeping lease ${lease.id} alive has failed for ${
            ((sent - this.#failingSince) / 1000).toFixed(1)
          }s: ${oneLine(err)}; it may expire in ${left.toFixed(1)}s`,
        );
      }
      this.#checkDeadline();
      this.#schedule(Math.min(RETRY_MS, interval));
      return;
    }
    if (this.#lease !== lease) return;
    if (ttl <= 0) return this.#gone(lease);
    // Only a newer send can move the deadline (answers may arrive out of order).
    this.#deadline = Math.max(this.#deadline, sent + ttl * 1000);
    if (this.#warned) this.#log.info(`lease ${lease.id} kept alive again`);
    this.#failingSince = undefined;
    this.#warned = false;
    const wasExpired = this.#expiredReported;
    this.#expiredReported = false;
    this.#schedule(interval);
    if (wasExpired) this.#events.renewed(lease);
  }

  #gone(lease: HeldLease): void {
    this.drop();
    this.#events.gone(lease);
  }
}

/** The first line of an error's message, cleaned of gRPC's empty suffixes. */
export function oneLine(err: unknown): string {
  return cleanEtcdError(err);
}
