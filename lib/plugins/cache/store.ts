/**
 * The bounded map behind each of the cache's two stores: least recently
 * used first out, capped by entries (CoreDNS's capacity) and by estimated
 * bytes.
 *
 * @module
 */

/** A bounded map that forgets its least recently used entries when full. */
export class LruStore<V> {
  /** Entries at most. */
  readonly capacity: number;
  /** Estimated bytes at most. */
  readonly maxBytes: number;
  #map = new Map<string, { value: V; bytes: number }>();
  #sizeOf: (value: V) => number;
  #bytes = 0;

  /** `sizeOf` estimates an entry's bytes (the key's are added); without it, entries count 0. */
  constructor(capacity: number, maxBytes = Infinity, sizeOf: (value: V) => number = () => 0) {
    this.capacity = Math.max(1, capacity);
    this.maxBytes = maxBytes;
    this.#sizeOf = sizeOf;
  }

  /** Entries held. */
  get size(): number {
    return this.#map.size;
  }

  /** Estimated bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The value for `key`, marking it recently used. */
  get(key: string): V | undefined {
    const entry = this.#map.get(key);
    if (entry === undefined) return undefined;
    this.#map.delete(key);
    this.#map.set(key, entry);
    return entry.value;
  }

  /** The value for `key`, leaving recency alone. */
  peek(key: string): V | undefined {
    return this.#map.get(key)?.value;
  }

  /**
   * Stores `value`; returns true when an older entry was evicted for it. A
   * value larger than the whole byte cap is not stored (what it replaces
   * goes).
   */
  set(key: string, value: V): boolean {
    this.delete(key);
    const bytes = this.#sizeOf(value) + key.length * 2;
    if (bytes > this.maxBytes) return false;
    let evicted = false;
    while (this.#map.size >= this.capacity || this.#bytes + bytes > this.maxBytes) {
      const oldest = this.#map.keys().next();
      if (oldest.done) break;
      this.delete(oldest.value);
      evicted = true;
    }
    this.#map.set(key, { value, bytes });
    this.#bytes += bytes;
    return evicted;
  }

  /** Forgets `key`. */
  delete(key: string): void {
    const entry = this.#map.get(key);
    if (entry === undefined) return;
    this.#map.delete(key);
    this.#bytes -= entry.bytes;
  }
}
