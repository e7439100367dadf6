/**
 * The fast path: replies kept encoded, keyed by the query as sent.
 *
 * A plugin marks a reply that depends only on the question and on its data:
 * `Reply.cacheGeneration` (etcd, idetcd) or `Reply.reuse` (the cache
 * plugin's hits, whose TTLs count down). The dispatcher then keeps the
 * encoded bytes; a later identical query is answered by copying them,
 * patching the ID and RD bit (and, for `reuse`, every TTL in place), without
 * decoding the query into objects, routing, or running the chain (the kept
 * reply is found by {@link fastKey}'s number and checked byte for byte, so
 * the hot path builds no string). A generation entry dies when its
 * generation moves (the data changed) and after at most a second (lease TTLs and SOA serials move with the clock); a
 * `reuse` entry when its `ttl()` says so. The whole cache is dropped on
 * reload, and it is bounded by entries and by bytes.
 *
 * Which chains may keep replies at all is decided when the configuration is
 * built, from each plugin's declaration (lib/server/plugin.ts `PerQuery`,
 * lib/server/config.ts `composeChain`); the observers a kept reply carries
 * (prometheus) hear of every reuse, so what the fast path skips is only
 * work, never behaviour.
 *
 * @module
 */

import type { FastObserver, Reuse } from "./plugin.ts";

/** Longest time a generation-marked reply is reused, in milliseconds. */
export const MAX_AGE_MS = 1000;
/** Entries kept at most; the oldest goes first. */
export const MAX_ENTRIES = 20_000;
/** Bytes kept at most (estimated: reply, key and bookkeeping); the oldest goes first. */
export const MAX_BYTES = 4 * 1024 * 1024;
/**
 * Bookkeeping bytes counted per entry besides its reply and key: the reply's
 * Uint8Array and ArrayBuffer objects and the allocator's record of its
 * backing store, the entry object, and the map's slot with its slack.
 * Measured (heap after a full GC plus external memory, 13,476 entries of
 * 110-129-byte replies under 50-character keys): about 540 bytes an entry,
 * of which the reply and key are about 170; at 160 the 4 MiB bound let the
 * cache hold 7.3 MB. 40 more for the second map (by {@link fastKey}'s hash)
 * and the entry's two number fields.
 */
const ENTRY_OVERHEAD = 440;

/** What the dispatcher keeps a reply with. */
export interface Keep {
  /** Valid while this returns the value it had when the reply was kept. */
  generation?: () => number;
  /** Asked on every reuse; wins over `generation`. */
  reuse?: Reuse;
  /** Told of every reuse. */
  observers: readonly FastObserver[];
}

interface Entry {
  /** Its {@link answerKey}. */
  key: string;
  /** Its {@link fastKey}. */
  fast: number;
  /** Where the question's bytes start in `key` (a fast hit is checked against them). */
  questionAt: number;
  bytes: Uint8Array;
  generation: number;
  currentGeneration?: () => number;
  reuse?: Reuse;
  /** Offsets of the TTL fields to rewrite (every record but OPT), for `reuse`. */
  ttlOffsets?: number[];
  storedAt: number;
  observers: readonly FastObserver[];
  cost: number;
}

/** Limits of an {@link AnswerCache}. */
export interface AnswerCacheLimits {
  /** Entries at most. */
  maxEntries: number;
  /** Estimated bytes at most. */
  maxBytes: number;
}

/** Skips a (possibly compressed) name at `o`; the offset after it, or -1 when malformed. */
function skipName(bytes: Uint8Array, o: number): number {
  while (o < bytes.length) {
    const len = bytes[o];
    if (len === 0) return o + 1;
    if ((len & 0xc0) === 0xc0) return o + 2;
    if (len > 63) return -1;
    o += len + 1;
  }
  return -1;
}

/**
 * The offsets of the TTL fields of every record but OPT in an encoded
 * message, or undefined when it cannot be walked (then it is not kept).
 */
export function ttlOffsets(bytes: Uint8Array): number[] | undefined {
  if (bytes.length < 12) return undefined;
  const qd = (bytes[4] << 8) | bytes[5];
  const rr = ((bytes[6] << 8) | bytes[7]) + ((bytes[8] << 8) | bytes[9]) +
    ((bytes[10] << 8) | bytes[11]);
  let o = 12;
  for (let i = 0; i < qd; i++) {
    o = skipName(bytes, o);
    if (o < 0) return undefined;
    o += 4;
  }
  const out: number[] = [];
  for (let i = 0; i < rr; i++) {
    o = skipName(bytes, o);
    if (o < 0 || o + 10 > bytes.length) return undefined;
    const type = (bytes[o] << 8) | bytes[o + 1];
    if (type !== 41) out.push(o + 4);
    o += 10 + ((bytes[o + 8] << 8) | bytes[o + 9]);
  }
  return o === bytes.length ? out : undefined;
}

/**
 * The cache key of a query, read straight from the wire: the question bytes
 * as sent (so the owner-name case of the reply matches), the AD and CD bits
 * (the cache plugin keys on CD, and AD decides its reply's AD), the EDNS0
 * size and DO bit, and the transport (which decides truncation). Undefined for
 * anything unusual (compression in the question, other sections, EDNS
 * options we would have to echo differently), which then takes the full path.
 */
export function answerKey(packet: Uint8Array, transport: "udp" | "tcp"): string | undefined {
  const n = packet.length;
  if (n < 17) return undefined;
  // QR=0, opcode QUERY; QDCOUNT=1, ANCOUNT=NSCOUNT=0, ARCOUNT 0 or 1.
  if ((packet[2] & 0xf8) !== 0) return undefined;
  if (packet[4] !== 0 || packet[5] !== 1 || packet[6] !== 0 || packet[7] !== 0) return undefined;
  if (packet[8] !== 0 || packet[9] !== 0 || packet[10] !== 0 || packet[11] > 1) return undefined;
  let o = 12;
  while (true) {
    if (o >= n) return undefined;
    const len = packet[o];
    if (len === 0) break;
    if (len > 63) return undefined;
    o += len + 1;
  }
  const questionEnd = o + 5;
  if (questionEnd > n) return undefined;
  let edns = "-";
  if (packet[11] === 1) {
    // The OPT record: root owner, type 41, class = UDP size, TTL = ext-rcode/version/flags.
    const r = questionEnd;
    if (r + 11 > n || packet[r] !== 0 || packet[r + 1] !== 0 || packet[r + 2] !== 41) {
      return undefined;
    }
    // EDNS options take the full path (a malformed one must get FORMERR there).
    const rdlen = (packet[r + 9] << 8) | packet[r + 10];
    if (rdlen !== 0 || r + 11 !== n) return undefined;
    const version = packet[r + 6];
    if (version !== 0) return undefined;
    const udpSize = (packet[r + 3] << 8) | packet[r + 4];
    const dnssecOk = (packet[r + 7] & 0x80) !== 0;
    edns = `${udpSize}${dnssecOk ? "d" : ""}`;
  } else if (questionEnd !== n) {
    return undefined;
  }
  let key = transport === "udp" ? "u" : "t";
  key += String.fromCharCode(48 + ((packet[3] & 0x30) >> 4));
  key += edns;
  key += "|";
  for (let i = 12; i < questionEnd; i++) key += String.fromCharCode(packet[i]);
  return key;
}

/** 2^32: {@link fastKey} packs the query's flags above its 32-bit hash. */
const HASH_SPAN = 0x1_0000_0000;

/** One FNV-1a step. */
function fnv(h: number, byte: number): number {
  return Math.imul(h ^ byte, 0x01000193);
}

/**
 * What {@link answerKey} says of a query, as a number, without building the
 * string: -1 for the same unusual queries; else the flags (transport, AD/CD,
 * EDNS0 present, DO, UDP size: 21 bits) times 2^32 plus a 32-bit FNV-1a hash
 * of the question bytes and those flags. Equal keys give equal numbers; a
 * kept reply is still checked byte for byte before it is sent, so two
 * queries whose numbers collide only cost a miss.
 */
export function fastKey(packet: Uint8Array, transport: "udp" | "tcp"): number {
  const n = packet.length;
  if (n < 17) return -1;
  if ((packet[2] & 0xf8) !== 0) return -1;
  if (packet[4] !== 0 || packet[5] !== 1 || packet[6] !== 0 || packet[7] !== 0) return -1;
  if (packet[8] !== 0 || packet[9] !== 0 || packet[10] !== 0 || packet[11] > 1) return -1;
  let o = 12;
  while (true) {
    if (o >= n) return -1;
    const len = packet[o];
    if (len === 0) break;
    if (len > 63) return -1;
    o += len + 1;
  }
  const questionEnd = o + 5;
  if (questionEnd > n) return -1;
  let flags = (transport === "udp" ? 1 : 0) | (((packet[3] & 0x30) >> 4) << 1);
  if (packet[11] === 1) {
    const r = questionEnd;
    if (r + 11 > n || packet[r] !== 0 || packet[r + 1] !== 0 || packet[r + 2] !== 41) return -1;
    const rdlen = (packet[r + 9] << 8) | packet[r + 10];
    if (rdlen !== 0 || r + 11 !== n) return -1;
    if (packet[r + 6] !== 0) return -1;
    const udpSize = (packet[r + 3] << 8) | packet[r + 4];
    flags |= 8 | ((packet[r + 7] & 0x80) !== 0 ? 16 : 0) | (udpSize << 5);
  } else if (questionEnd !== n) {
    return -1;
  }
  let h = 0x811c9dc5;
  for (let i = 12; i < questionEnd; i++) h = fnv(h, packet[i]);
  return flags * HASH_SPAN + (fnv(h, flags) >>> 0);
}

/** The {@link fastKey} number of a key made by {@link answerKey}, and where its question starts. */
function keyParts(key: string): { fast: number; questionAt: number } {
  const bar = key.indexOf("|");
  let flags = (key[0] === "u" ? 1 : 0) | ((key.charCodeAt(1) - 48) << 1);
  const edns = key.slice(2, bar);
  if (edns !== "-") {
    const dnssecOk = edns.endsWith("d");
    flags |= 8 | (dnssecOk ? 16 : 0) | (Number(dnssecOk ? edns.slice(0, -1) : edns) << 5);
  }
  let h = 0x811c9dc5;
  for (let i = bar + 1; i < key.length; i++) h = fnv(h, key.charCodeAt(i));
  return { fast: flags * HASH_SPAN + (fnv(h, flags) >>> 0), questionAt: bar + 1 };
}

/** Encoded replies by {@link answerKey}. */
export class AnswerCache {
  #entries = new Map<string, Entry>();
  /** The same entries by {@link fastKey}'s hash (the latest one of a colliding pair). */
  #byHash = new Map<number, Entry>();
  #observedEntries = 0;

  /** Whether any kept reply has observers (the dispatcher times fast answers only then). */
  get observed(): boolean {
    return this.#observedEntries > 0;
  }
  #now: () => number;
  #limits: AnswerCacheLimits;
  #bytes = 0;

  /** An empty cache on the clock `now` (ms), within `limits`. */
  constructor(
    now: () => number = () => performance.now(),
    limits: AnswerCacheLimits = { maxEntries: MAX_ENTRIES, maxBytes: MAX_BYTES },
  ) {
    this.#now = now;
    this.#limits = limits;
  }

  /** Entries held now. */
  get size(): number {
    return this.#entries.size;
  }

  /** Estimated bytes held now. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * {@link reply} for a query as received, without building its
   * {@link answerKey}: the hot path. Undefined on a miss (an unusual query,
   * none kept, or a colliding one kept), and the caller then takes the full path.
   */
  replyTo(
    query: Uint8Array,
    transport: "udp" | "tcp",
    observed?: (observers: readonly FastObserver[], size: number) => void,
  ): Uint8Array | undefined {
    const fast = fastKey(query, transport);
    if (fast < 0) return undefined;
    const entry = this.#byHash.get(fast >>> 0);
    // Equal question bytes end the question at the same offset: with the same flags, the same key.
    if (!entry || entry.fast !== fast) return undefined;
    const key = entry.key;
    const at = entry.questionAt;
    if (query.length < 12 + key.length - at) return undefined;
    for (let i = at; i < key.length; i++) {
      if (key.charCodeAt(i) !== query[12 + i - at]) return undefined;
    }
    return this.#replyFrom(entry, query, observed);
  }

  /**
   * The reply for `query` (whose key is `key`), ready to send: a copy of the
   * kept bytes with the query's ID and RD bit (and TTLs counted down for a
   * `reuse` entry). Undefined on a miss. `observed` gets the entry's
   * observers and the reply's size when it has any.
   */
  reply(
    key: string,
    query: Uint8Array,
    observed?: (observers: readonly FastObserver[], size: number) => void,
  ): Uint8Array | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    return this.#replyFrom(entry, query, observed);
  }

  #replyFrom(
    entry: Entry,
    query: Uint8Array,
    observed?: (observers: readonly FastObserver[], size: number) => void,
  ): Uint8Array | undefined {
    let ttl: number | undefined;
    if (entry.reuse) {
      ttl = entry.reuse.ttl();
      if (ttl === undefined) {
        // Not necessarily gone (a refresh may be due): the full path decides
        // and keeps the reply it produces again.
        this.#delete(entry.key, entry);
        return undefined;
      }
    } else if (
      this.#now() - entry.storedAt > MAX_AGE_MS || entry.currentGeneration!() !== entry.generation
    ) {
      this.#delete(entry.key, entry);
      return undefined;
    }
    const out = entry.bytes.slice();
    out[0] = query[0];
    out[1] = query[1];
    out[2] = (out[2] & 0xfe) | (query[2] & 0x01);
    if (ttl !== undefined) {
      const t = Math.max(0, Math.min(ttl, 0x7fffffff));
      for (const o of entry.ttlOffsets!) {
        out[o] = t >>> 24;
        out[o + 1] = (t >>> 16) & 0xff;
        out[o + 2] = (t >>> 8) & 0xff;
        out[o + 3] = t & 0xff;
      }
    }
    if (observed && entry.observers.length) observed(entry.observers, out.length);
    return out;
  }

  /** Keeps `bytes` for `key` as `keep` says; false when it cannot be kept (not walkable, too big). */
  store(key: string, bytes: Uint8Array, keep: Keep): boolean {
    let offsets: number[] | undefined;
    if (keep.reuse) {
      offsets = ttlOffsets(bytes);
      if (!offsets) return false;
    } else if (!keep.generation) {
      return false;
    }
    const cost = bytes.length + key.length + ENTRY_OVERHEAD + (offsets ? offsets.length * 8 : 0);
    if (cost > this.#limits.maxBytes) return false;
    const old = this.#entries.get(key);
    if (old) this.#delete(key, old);
    // The oldest entries go until the new one fits both limits.
    while (
      this.#entries.size >= this.#limits.maxEntries || this.#bytes + cost > this.#limits.maxBytes
    ) {
      const oldest = this.#entries.entries().next().value;
      if (!oldest) break;
      this.#delete(oldest[0], oldest[1]);
    }
    const { fast, questionAt } = keyParts(key);
    const entry: Entry = {
      key,
      fast,
      questionAt,
      bytes,
      generation: keep.reuse ? 0 : keep.generation!(),
      currentGeneration: keep.reuse ? undefined : keep.generation,
      reuse: keep.reuse,
      ttlOffsets: offsets,
      storedAt: this.#now(),
      observers: keep.observers,
      cost,
    };
    this.#entries.set(key, entry);
    this.#byHash.set(fast >>> 0, entry);
    if (entry.observers.length) this.#observedEntries++;
    this.#bytes += cost;
    return true;
  }

  #delete(key: string, entry: Entry): void {
    this.#entries.delete(key);
    if (this.#byHash.get(entry.fast >>> 0) === entry) this.#byHash.delete(entry.fast >>> 0);
    if (entry.observers.length) this.#observedEntries--;
    this.#bytes -= entry.cost;
  }

  /** Forgets everything (a reload changed the chains). */
  clear(): void {
    this.#entries.clear();
    this.#byHash.clear();
    this.#observedEntries = 0;
    this.#bytes = 0;
  }
}
