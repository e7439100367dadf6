/**
 * The ownership monitor: watches the held lock through the zone's watch-fed
 * copy (no watcher of its own) and tells the driver when the lock is gone,
 * belongs to someone else, was taken over by a newer instance with this
 * node's identity, or when its address records need rewriting. A freed slot
 * (any lock of the zone deleted) wakes a claimer that waits for one.
 *
 * The copy may lag etcd: nothing is concluded about a claim until the copy
 * has reached the revision the claim was written at.
 *
 * @module
 */

import type { KeyValue } from "../../etcd/types.ts";
import type { ZoneCopy } from "../../etcd/mirror.ts";
import type { NamePattern } from "./pattern.ts";
import { decodeLock, parseSlotKey } from "./records.ts";
import type { HeldLock } from "./txns.ts";

/** What the copy says about the held lock. */
export type OwnershipVerdict =
  /** The copy has not reached the claim's revision yet. */
  | { kind: "unknown" }
  /** Still ours; `children` are the address records as the copy has them. */
  | { kind: "ours"; children: readonly KeyValue[] }
  | { kind: "lost"; reason: string }
  /** The lock carries this node's identity under another lease: a newer instance took it. */
  | { kind: "superseded" };

/** Judges `held` against the copy. */
export function judgeOwnership(
  copy: ZoneCopy,
  held: HeldLock & { revision: number },
  identity: string,
): OwnershipVerdict {
  if (copy.revision < held.revision) return { kind: "unknown" };
  const kv = copy.get(held.key);
  if (!kv) return { kind: "lost", reason: "its lock was deleted" };
  if (kv.lease === held.leaseId && kv.createRevision === held.createRevision) {
    return { kind: "ours", children: copy.range(held.key + "/") };
  }
  if (decodeLock(kv.value)?.identity === identity && kv.lease !== held.leaseId) {
    return { kind: "superseded" };
  }
  return { kind: "lost", reason: "its lock now belongs to another lease" };
}

/** Calls back on copy changes that matter to the claim. */
export class OwnershipMonitor {
  readonly #stop: () => void;

  /**
   * Subscribes to `copy`: `onChange` runs after every applied batch (the
   * driver judges the held lock then), `onSlotFreed` when a lock of the
   * zone was deleted.
   */
  constructor(
    copy: ZoneCopy,
    zonePath: string,
    pattern: NamePattern,
    callbacks: { onChange(): void; onSlotFreed(): void },
  ) {
    this.#stop = copy.onChange((change) => {
      callbacks.onChange();
      const freed = change.deleted.some((kv) =>
        parseSlotKey(zonePath, pattern, kv.key)?.kind === "lock"
      );
      if (freed) callbacks.onSlotFreed();
    });
  }

  /** Unsubscribes. */
  close(): void {
    this.#stop();
  }
}
