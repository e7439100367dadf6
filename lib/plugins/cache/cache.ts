/**
 * The cache itself: response classification, TTL computation, the
 * positive/negative stores and the serve logic of CoreDNS's cache plugin
 * (plugin/cache: cache.go, handler.go, item.go; plugin/pkg/response,
 * plugin/pkg/dnsutil).
 *
 * @module
 */

import { matchZone } from "../../dns/name.ts";
import { Opcode, Rcode, type RR, Type } from "../../dns/types.ts";
import type { Handler, Reply, Request, Reuse } from "../../server/plugin.ts";
import { LruStore } from "./store.ts";

export { LruStore } from "./store.ts";

/** CoreDNS's MaximumDefaulTTL: positive answers are cached at most this long (s). */
export const MAX_TTL = 3600;
/** Denials are cached at most this long (s). */
export const MAX_NEGATIVE_TTL = 1800;
/** CoreDNS's MinimalDefaultTTL (s). */
export const MIN_TTL = 5;
/** CoreDNS's cache shards; capacities are rounded to a multiple of this. */
export const SHARDS = 256;
/** Default capacity per cache (256 shards of 39). */
export const DEFAULT_CAPACITY = 9984;
/**
 * Estimated bytes each of the two caches holds at most, besides its entry
 * cap (CoreDNS bounds entries only; a few large replies must not hold
 * the memory of thousands).
 */
export const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;

/** CoreDNS's response.Type. */
export type ResponseType =
  | "NoError"
  | "NameError"
  | "NoData"
  | "Delegation"
  | "ServerError"
  | "OtherError"
  | "Meta"
  | "Update";

/** What the cache is configured with. Durations in seconds. */
export interface CacheOptions {
  /** Zones cached; other names pass straight through. */
  zones: string[];
  /** Entries the positive cache holds before evicting the least recently used. */
  successCapacity: number;
  /** Upper bound on a positive answer's cached TTL, however long its records say. */
  successMaxTTL: number;
  /** Lower bound on a positive answer's cached TTL, so very short TTLs still get hits. */
  successMinTTL: number;
  /** Entries the denial cache holds; separate so a flood of misses cannot evict answers. */
  denialCapacity: number;
  /** Upper bound on a denial's cached TTL (CoreDNS caps these lower than answers). */
  denialMaxTTL: number;
  /** Lower bound on a denial's cached TTL. */
  denialMinTTL: number;
  /** How long SERVFAIL (and NOTIMP) replies are cached; 0 disables. */
  servfailTTL: number;
  /** Prefetch after this many hits (no gap of `prefetchWindow`); 0 disables. */
  prefetch: number;
  /** Seconds: a gap longer than this between hits restarts the `prefetch` count. */
  prefetchWindow: number;
  /** Prefetch when the remaining TTL drops to this percentage of the original. */
  prefetchPercentage: number;
  /** Serve expired entries for this long (serve_stale); 0 disables. */
  staleUpTo: number;
  /** serve_stale verify: ask the backend first and serve stale only if it fails. */
  verifyStale: boolean;
  /** Zones whose positive answers are never cached (`disable success`). */
  successExcept: string[];
  /** Zones whose denials are never cached (`disable denial`). */
  denialExcept: string[];
  /** Hits keep the TTL the entry was stored with instead of counting down. */
  keepTTL: boolean;
  /** Estimated bytes each cache holds at most; unset means {@link DEFAULT_MAX_BYTES}. */
  maxBytes?: number;
}

/** CoreDNS's defaults (cache.New()). */
export function defaultOptions(): CacheOptions {
  return {
    zones: ["."],
    successCapacity: DEFAULT_CAPACITY,
    successMaxTTL: MAX_TTL,
    successMinTTL: MIN_TTL,
    denialCapacity: DEFAULT_CAPACITY,
    denialMaxTTL: MAX_NEGATIVE_TTL,
    denialMinTTL: MIN_TTL,
    servfailTTL: MIN_TTL,
    prefetch: 0,
    prefetchWindow: 60,
    prefetchPercentage: 10,
    staleUpTo: 0,
    verifyStale: false,
    successExcept: [],
    denialExcept: [],
    keepTTL: false,
  };
}

/** The capacity CoreDNS's sharded cache really holds: at least 4 per shard, whole shards. */
export function effectiveCapacity(requested: number): number {
  return Math.max(4, Math.trunc(requested / SHARDS)) * SHARDS;
}

const YEAR68 = 2 ** 31;

/** miekg's RRSIG.ValidityPeriod on raw RRSIG rdata (expiration at 8, inception at 12). */
function rrsigValid(data: Uint8Array, nowSeconds: number): boolean {
  if (data.length < 16) return true;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const expiration = view.getUint32(8), inception = view.getUint32(12);
  const modi = Math.trunc((inception - nowSeconds) / YEAR68);
  const mode = Math.trunc((expiration - nowSeconds) / YEAR68);
  return inception + modi * YEAR68 <= nowSeconds && nowSeconds <= expiration + mode * YEAR68;
}

function hasExpiredSignature(records: RR[], nowSeconds: number): boolean {
  return records.some((r) =>
    r.type === Type.RRSIG && r.data instanceof Uint8Array && !rrsigValid(r.data, nowSeconds)
  );
}

/** The parts of a reply and its query that decide its class. */
export interface Classifiable {
  /** The reply's RCODE (NOERROR, NXDOMAIN, SERVFAIL, ...). */
  rcode: number;
  /** Answer section: empty with NOERROR means NODATA or a delegation. */
  answer: RR[];
  /** Authority section: an SOA here marks a denial, NS records a delegation. */
  authority: RR[];
  /** Additional section; counted for the minimal TTL (OPT excluded). */
  additional: RR[];
}

/** CoreDNS's response.Typify for a reply to a query of `opcode`/`qtype`. */
export function classify(
  reply: Classifiable,
  query: { opcode: number; qtype: number; dnssecOk: boolean },
  nowSeconds: number,
): ResponseType {
  if (query.opcode === Opcode.Update) return "Update";
  if (query.opcode === Opcode.Notify) return "Meta";
  if (query.qtype === Type.AXFR || query.qtype === Type.IXFR) return "Meta";
  if (
    query.dnssecOk &&
    [reply.answer, reply.authority, reply.additional].some((s) =>
      hasExpiredSignature(s, nowSeconds)
    )
  ) return "OtherError";
  if (reply.answer.length > 0 && reply.rcode === Rcode.Success) return "NoError";
  const soa = reply.authority.some((r) => r.type === Type.SOA);
  const ns = reply.authority.some((r) => r.type === Type.NS);
  if (soa && reply.rcode === Rcode.Success) return "NoData";
  if (soa && reply.rcode === Rcode.NameError) return "NameError";
  if (reply.rcode === Rcode.ServerFailure || reply.rcode === Rcode.NotImplemented) {
    return "ServerError";
  }
  if (ns && reply.rcode === Rcode.Success) return "Delegation";
  if (reply.rcode === Rcode.Success) return "NoError";
  return "OtherError";
}

/** CoreDNS's dnsutil.MinimalTTL (seconds): the lowest TTL in the reply, 5 s as a fail-safe. */
export function minimalTTL(reply: Classifiable, type: ResponseType): number {
  if (type !== "NoError" && type !== "NameError" && type !== "NoData") return MIN_TTL;
  const extra = reply.additional.filter((r) => r.type !== Type.OPT);
  if (reply.answer.length + reply.authority.length + extra.length === 0) return MIN_TTL;
  let min = MAX_TTL;
  for (const r of [...reply.answer, ...reply.authority, ...extra]) if (r.ttl < min) min = r.ttl;
  return min;
}

/** The TTL a reply is cached (and rewritten) with: minimal TTL clamped to [min, max]. */
export function cacheDuration(reply: Classifiable, type: ResponseType, o: CacheOptions): number {
  if (type === "ServerError") return o.servfailTTL;
  const negative = type === "NameError" || type === "NoData";
  const ttl = minimalTTL(reply, type);
  const [min, max] = negative
    ? [o.denialMinTTL, o.denialMaxTTL]
    : [o.successMinTTL, o.successMaxTTL];
  return Math.min(Math.max(ttl, min), max);
}

/** The cache key: lower-cased qname, qtype, qclass, DO and CD. */
export function cacheKey(req: Request): string {
  const dnssecOk = req.edns?.dnssecOk ?? false;
  return `${req.qname}|${req.question.type}|${req.question.class}|${dnssecOk ? 1 : 0}${
    req.cd ? 1 : 0
  }`;
}

/** One cached reply. */
export interface Item {
  /** RCODE replayed on every hit. */
  rcode: number;
  /** The upstream AD bit; a hit sets it only when the query asked (DO or AD). */
  authenticData: boolean;
  /** The upstream RA bit, replayed as received. */
  recursionAvailable: boolean;
  /** Answer records as stored; their TTLs are rewritten to the time left on each hit. */
  answer: RR[];
  /** Authority records, TTLs rewritten like `answer`. */
  authority: RR[];
  /** Additional records without OPT (the server writes its own EDNS). */
  additional: RR[];
  /** Whole seconds the entry lives. */
  origTTL: number;
  /** When it was stored (ms since the epoch). */
  stored: number;
  /** Hit frequency for prefetch (CoreDNS's freq.Freq). */
  freq: { last: number; hits: number };
  /** A background refresh is running. */
  refreshing: boolean;
}

/** Estimated bytes a record holds in memory. */
function recordBytes(r: RR): number {
  const data = r.data as unknown;
  let n = 48 + r.name.length;
  if (typeof data === "string") n += data.length;
  else if (data instanceof Uint8Array) n += data.byteLength;
  else if (data && typeof data === "object") {
    for (const v of Object.values(data)) {
      n += 16 + (typeof v === "string" ? v.length : v instanceof Uint8Array ? v.byteLength : 8);
    }
  }
  return n;
}

/** Estimated bytes an item holds in memory (its records and bookkeeping). */
export function itemBytes(item: Item): number {
  let n = 160;
  for (const r of item.answer) n += recordBytes(r);
  for (const r of item.authority) n += recordBytes(r);
  for (const r of item.additional) n += recordBytes(r);
  return n;
}

/** Seconds left on `item` at `now` (ms); negative once expired. */
export function itemTTL(item: Item, now: number): number {
  return item.origTTL - Math.floor((now - item.stored) / 1000);
}

function withTTL(records: RR[], ttl: number): RR[] {
  const out: RR[] = [];
  for (const r of records) if (r.type !== Type.OPT) out.push({ ...r, ttl });
  return out;
}

/** The positive and negative caches of one server block. */
export class Cache {
  /** The configuration this cache was built with; read on every lookup, never changed. */
  readonly options: CacheOptions;
  /** Positive answers (NOERROR with data, delegations). */
  readonly success: LruStore<Item>;
  /** Denials (NXDOMAIN, NODATA) and server failures. */
  readonly denial: LruStore<Item>;
  #now: () => number;
  #background = new Set<Promise<void>>();
  #stopped = false;

  /** `now` is the clock (ms since the epoch); tests pass a fake one to expire entries at will. */
  constructor(options: CacheOptions, now: () => number = Date.now) {
    this.options = options;
    const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
    this.success = new LruStore(options.successCapacity, maxBytes, itemBytes);
    this.denial = new LruStore(options.denialCapacity, maxBytes, itemBytes);
    this.#now = now;
  }

  /** The live entry for `key` (fresh, or stale within serve_stale), else undefined. */
  lookup(key: string, now: number): Item | undefined {
    const stale = Math.trunc(this.options.staleUpTo);
    for (const store of [this.denial, this.success]) {
      const item = store.get(key);
      if (!item) continue;
      const ttl = itemTTL(item, now);
      if (ttl > 0 || (stale > 0 && -ttl < stale)) return item;
      store.delete(key); // too old to serve, even stale
    }
    return undefined;
  }

  /** Answers from the cache, or asks `next` and caches its reply. */
  async serve(req: Request, next: Handler): Promise<Reply> {
    const o = this.options;
    if (!matchZone(o.zones, req.qname)) return next(req);
    const now = this.#now();
    const key = cacheKey(req);
    const item = this.lookup(key, now);
    if (!item) return this.#store(req, await next(req), key, false);

    let at = now;
    const ttl = itemTTL(item, now);
    if (ttl < 0) {
      if (o.verifyStale) {
        const fresh = await this.#verify(req, next, key);
        if (fresh) return fresh;
      }
      // Shift the clock so the stale entry reads TTL 0.
      at = now + ttl * 1000;
      if (!o.verifyStale) this.#refresh(req, next, key, item, at);
      if (o.keepTTL) at = item.stored;
      // A stale answer is not kept for the fast path: each one starts a refresh.
      return this.#fromItem(item, req, at);
    } else if (this.#shouldPrefetch(item, now)) {
      this.#refresh(req, next, key, item, now);
    }
    if (o.keepTTL) at = item.stored;
    const reply = this.#fromItem(item, req, at);
    reply.reuse = this.#reuse(key, item);
    return reply;
  }

  /**
   * How the server's fast path may send this hit again (see Reply.reuse):
   * exactly when this cache would answer the same query the same way, with
   * the TTL counted down in place. The same lookup (key, recency, expiry)
   * and the same prefetch bookkeeping as {@link serve}; a stale entry, or a
   * hit that would start a prefetch, goes through the chain instead.
   */
  #reuse(key: string, item: Item): Reuse {
    return {
      ttl: () => {
        const now = this.#now();
        if (this.lookup(key, now) !== item) return undefined;
        const ttl = itemTTL(item, now);
        if (ttl <= 0) return undefined;
        if (!this.#countFastHit(item, now)) return undefined;
        return this.options.keepTTL ? item.origTTL : ttl;
      },
    };
  }

  /**
   * {@link #shouldPrefetch} for a fast-path hit: counts it as that would,
   * unless this hit would start a prefetch (false: the full path counts it
   * and refreshes).
   */
  #countFastHit(item: Item, now: number): boolean {
    const o = this.options;
    if (o.prefetch <= 0) return true;
    const f = item.freq;
    const hits = f.last < now - o.prefetchWindow * 1000 ? 1 : f.hits + 1;
    const threshold = Math.ceil((o.prefetchPercentage / 100) * item.origTTL);
    if (hits >= o.prefetch && itemTTL(item, now) <= threshold) return false;
    f.hits = hits;
    f.last = now;
    return true;
  }

  /** Starts no more background refreshes (shutdown); running ones finish on their own. */
  stop(): void {
    this.#stopped = true;
  }

  /** Waits for background refreshes (prefetch, stale) to settle. */
  async drain(): Promise<void> {
    while (this.#background.size) await Promise.allSettled([...this.#background]);
  }

  /** A cached entry as a reply: AA set, TTLs counted down, AD only when DNSSEC was wanted. */
  #fromItem(item: Item, req: Request, at: number): Reply {
    const ttl = Math.max(0, itemTTL(item, at));
    const dnssecOk = req.edns?.dnssecOk ?? false;
    return {
      rcode: item.rcode,
      // Some stub resolvers drop non-authoritative answers; CoreDNS always sets AA here.
      authoritative: true,
      recursionAvailable: item.recursionAvailable,
      authenticData: item.authenticData && (dnssecOk || req.ad),
      answer: withTTL(item.answer, ttl),
      authority: withTTL(item.authority, ttl),
      additional: withTTL(item.additional, ttl),
      plugin: "cache",
    };
  }

  /**
   * Caches `reply` when its class allows, and returns it with every TTL
   * set to the cache duration (the first miss reads like later hits).
   */
  #store(req: Request, reply: Reply, key: string, prefetch: boolean): Reply {
    // A bare reply is the server's error answer, not something a plugin wrote.
    if (reply.bare) return reply;
    const o = this.options;
    const now = this.#now();
    const dnssecOk = req.edns?.dnssecOk ?? false;
    const type = classify(
      reply,
      { opcode: req.opcode, qtype: req.question.type, dnssecOk },
      Math.floor(now / 1000),
    );
    const cacheable = !reply.truncated && type !== "OtherError" && type !== "Meta" &&
      type !== "Update";
    const duration = cacheDuration(reply, type, o);
    if (cacheable && duration > 0) this.#set(req, reply, key, type, duration, now, prefetch);
    if (prefetch) return reply;
    const ttl = Math.floor(duration);
    return {
      rcode: reply.rcode,
      authoritative: reply.authoritative,
      truncated: reply.truncated,
      recursionAvailable: reply.recursionAvailable,
      // Keep AD only for clients that asked for DNSSEC or set AD (RFC 6840 5.7-5.8).
      authenticData: (reply.authenticData ?? false) && (dnssecOk || req.ad),
      answer: withTTL(reply.answer, ttl),
      authority: withTTL(reply.authority, ttl),
      additional: withTTL(reply.additional, ttl),
      plugin: reply.plugin,
      error: reply.error,
    };
  }

  #set(
    req: Request,
    reply: Reply,
    key: string,
    type: ResponseType,
    duration: number,
    now: number,
    prefetch: boolean,
  ): void {
    const o = this.options;
    const positive = type === "NoError" || type === "Delegation";
    const except = positive ? o.successExcept : o.denialExcept;
    if (matchZone(except, req.qname)) return;
    const item: Item = {
      rcode: reply.rcode,
      authenticData: reply.authenticData ?? false,
      recursionAvailable: reply.recursionAvailable ?? false,
      answer: reply.answer,
      authority: reply.authority,
      // OPT is hop-by-hop.
      additional: reply.additional.filter((r) => r.type !== Type.OPT),
      origTTL: Math.floor(duration),
      stored: now,
      freq: { last: 0, hits: 0 },
      refreshing: false,
    };
    if (positive) {
      this.success.set(key, item);
      // A prefetched positive answer replaces a denial cached under the same key.
      if (prefetch) this.denial.delete(key);
    } else {
      this.denial.set(key, item);
    }
  }

  /** serve_stale verify: a fresh NOERROR/NXDOMAIN from the backend wins over the stale entry. */
  async #verify(req: Request, next: Handler, key: string): Promise<Reply | undefined> {
    let reply: Reply;
    try {
      reply = await next(req);
    } catch {
      return undefined;
    }
    if (reply.bare || (reply.rcode !== Rcode.Success && reply.rcode !== Rcode.NameError)) {
      return undefined;
    }
    return this.#store(req, reply, key, false);
  }

  /** CoreDNS's shouldPrefetch: popular (AMOUNT hits without gaps) and close to expiry. */
  #shouldPrefetch(item: Item, now: number): boolean {
    const o = this.options;
    if (o.prefetch <= 0) return false;
    const f = item.freq;
    f.hits = f.last < now - o.prefetchWindow * 1000 ? 1 : f.hits + 1;
    f.last = now;
    const threshold = Math.ceil((o.prefetchPercentage / 100) * item.origTTL);
    return f.hits >= o.prefetch && itemTTL(item, now) <= threshold;
  }

  /** Refreshes `item` in the background (once at a time), carrying its popularity over. */
  #refresh(req: Request, next: Handler, key: string, item: Item, at: number): void {
    if (item.refreshing || this.#stopped) return;
    item.refreshing = true;
    // As CoreDNS: refresh as if over TCP, so a UDP-sized truncation does not spoil the entry.
    const refreshReq: Request = { ...req, transport: "tcp" };
    const task = (async () => {
      try {
        this.#store(refreshReq, await next(refreshReq), key, true);
        const fresh = this.success.peek(key) ?? this.denial.peek(key);
        if (fresh && fresh !== item) fresh.freq = { last: at, hits: item.freq.hits };
      } catch {
        // The stale or old entry stays; the next query retries.
      } finally {
        item.refreshing = false;
      }
    })();
    this.#background.add(task);
    task.finally(() => this.#background.delete(task));
  }
}
