/**
 * The mirrored entries of one prefix: exact lookups and prefix ranges in
 * etcd's key order (UTF-8 bytes), with the helpers for that order.
 *
 * @module
 */

import type { KeyValue } from "./types.ts";

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

/** Sorted arrays shorter than this are never copied to shrink them (their capacity is small). */
const SHRINK_MIN = 1024;

/**
 * The mirrored entries: a map for exact lookups and a sorted key array for
 * prefix ranges. Inserts and deletes of a batch are merged into the array
 * once, at {@link KeyIndex.commit}.
 */
export class KeyIndex {
  #entries: Map<string, KeyValue>;
  #sorted: string[];
  /**
   * The longest #sorted has been since it was last built whole: a JS array
   * keeps the capacity it grew to when elements are spliced out, so one that
   * shrinks by deletions a few at a time is copied once it is a quarter of that.
   */
  #sortedPeak = 0;
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
    this.#sortedPeak = this.#sorted.length;
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
    if (this.#entries.size === 0) {
      // Everything went (a prefix deleted at once): start over rather than
      // merge, so that no array sized for the old key count stays behind.
      this.#reset();
      return;
    }
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
      this.#sortedPeak = Math.max(this.#sortedPeak, sorted.length);
      if (this.#sortedPeak > SHRINK_MIN && sorted.length * 4 < this.#sortedPeak) {
        // Amortised O(1) per deletion: the copy is as long as the quarter left.
        this.#sorted = sorted.slice();
        this.#sortedPeak = this.#sorted.length;
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
    this.#sortedPeak = n;
  }

  /**
   * @internal What the index holds, for tests that check that its memory goes
   * with the keys: entries, sorted keys, and changes not yet committed.
   */
  footprint(): { entries: number; sorted: number; pending: number } {
    return {
      entries: this.#entries.size,
      sorted: this.#sorted.length,
      pending: this.#added.length + this.#removed.length,
    };
  }

  /**
   * @internal The longest the sorted key array has been since it was last
   * built whole (its capacity, give or take), for tests that check that it is
   * copied smaller once most keys have gone.
   */
  get sortedPeak(): number {
    return this.#sortedPeak;
  }

  /** Drops every structure for fresh empty ones. */
  #reset(): void {
    this.#entries = new Map();
    this.#sorted = [];
    this.#sortedPeak = 0;
    this.#added = [];
    this.#removed = [];
    this.#compare = compareAscii;
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
