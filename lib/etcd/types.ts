/**
 * The read side of an etcd prefix as plugins see it: a watch-fed, in-memory
 * copy (see mirror.ts). Lookups never wait on etcd.
 *
 * @module
 */

/** One key as last seen in etcd. Objects are immutable: a change replaces the object. */
export interface KeyValue {
  /** The key, decoded as UTF-8. */
  readonly key: string;
  /** The value, decoded as UTF-8. */
  readonly value: string;
  /** Lease ID as a decimal string; "0" when the key has no lease. */
  readonly lease: string;
  /** Revision that created the key; changes only when it is deleted and created again. */
  readonly createRevision: number;
  /** Revision of the last write to the key; compare-and-swap guards use it. */
  readonly modRevision: number;
}

/** Synchronous reads over a mirrored prefix. */
export interface KeyValueSource {
  /** Every entry whose key starts with `prefix`, in ascending byte order of key (etcd's order). */
  range(prefix: string): readonly KeyValue[];
  /** The entry with exactly this key. */
  get(key: string): KeyValue | undefined;
  /**
   * Seconds left on a lease, computed locally from the last TimeToLive answer
   * (no RPC per call); undefined while unknown.
   */
  leaseRemaining(lease: string): number | undefined;
  /** Increases on every applied change; derived answers may be cached per generation. */
  readonly generation: number;
}
