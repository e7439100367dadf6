/**
 * The fast path: replies kept encoded, keyed by the question as sent.
 *
 * A plugin marks a reply that depends only on the question and on its data
 * (`Reply.cacheGeneration`). The dispatcher then keeps the encoded bytes; a
 * later identical question is answered by copying them and patching the ID
 * and the RD/CD bits, without decoding the query into objects, routing, or
 * running the chain. An entry dies when its generation moves (the data
 * changed) and after at most a second (lease TTLs and SOA serials move with
 * the clock), and the whole cache is dropped on reload.
 *
 * Replies whose chain wants to see every query (log, prometheus, cache's TTL
 * countdown, loadbalance's rotation) are never kept, so what the fast path
 * skips is only work, never behaviour.
 *
 * @module
 */

/** Longest time an encoded reply is reused, in milliseconds. */
export const MAX_AGE_MS = 1000;
/** Entries kept at most; the oldest goes first. */
export const MAX_ENTRIES = 20_000;

interface Entry {
  bytes: Uint8Array;
  generation: number;
  currentGeneration: () => number;
  storedAt: number;
}

/**
 * The cache key of a query, read straight from the wire: the question bytes
 * as sent (so the owner-name case of the reply matches), the EDNS0 size and
 * DO bit, and the transport (which decides truncation). Undefined for
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
  key += edns;
  key += "|";
  for (let i = 12; i < questionEnd; i++) key += String.fromCharCode(packet[i]);
  return key;
}

/** Encoded replies by {@link answerKey}. */
export class AnswerCache {
  #entries = new Map<string, Entry>();
  #now: () => number;

  constructor(now: () => number = () => performance.now()) {
    this.#now = now;
  }

  /** Entries held now. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * The reply for `query` (whose key is `key`), ready to send: a copy of the
   * kept bytes with the query's ID and RD/CD bits. Undefined on a miss.
   */
  reply(key: string, query: Uint8Array): Uint8Array | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (
      this.#now() - entry.storedAt > MAX_AGE_MS || entry.currentGeneration() !== entry.generation
    ) {
      this.#entries.delete(key);
      return undefined;
    }
    const out = entry.bytes.slice();
    out[0] = query[0];
    out[1] = query[1];
    out[2] = (out[2] & 0xfe) | (query[2] & 0x01);
    out[3] = (out[3] & 0xef) | (query[3] & 0x10);
    return out;
  }

  /** Keeps `bytes` for `key` while `generation()` stays at its current value. */
  store(key: string, bytes: Uint8Array, generation: () => number): void {
    // Replacing an entry frees its own place; otherwise the oldest entry goes.
    if (!this.#entries.delete(key) && this.#entries.size >= MAX_ENTRIES) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    this.#entries.set(key, {
      bytes,
      generation: generation(),
      currentGeneration: generation,
      storedAt: this.#now(),
    });
  }

  /** Forgets everything (a reload changed the chains). */
  clear(): void {
    this.#entries.clear();
  }
}
