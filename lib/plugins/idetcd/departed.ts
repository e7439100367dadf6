/**
 * Names whose lease etcd ended, held down for a few seconds.
 *
 * When etcd has been paused or cut off for longer than the leases, it ends
 * them all at once when it comes back, and every node sees every name
 * deleted before the holders (alive all along) have claimed them again,
 * milliseconds later. Answering NXDOMAIN in that gap would be cached by
 * resolvers. So a name deleted by a lease's end keeps answering from memory
 * for {@link HOLD_DOWN_MS}, unless the ID is claimed again meanwhile (then
 * the new holder answers). A name its holder released on purpose (the "last
 * holder" record names the released lease, written in the same transaction)
 * goes at once.
 *
 * @module
 */

import type { MirrorChange, ZoneCopy } from "../../etcd/mirror.ts";
import type { NamePattern } from "./pattern.ts";
import {
  ClusterView,
  decodeMemoryRecord,
  type Member,
  memoryKey,
  namePath,
  parseSlotKey,
} from "./records.ts";

/** How long a name whose lease ended keeps answering, ms. */
export const HOLD_DOWN_MS = 3_000;

/** Members recently deleted by the end of their lease; see the module doc. */
export class DepartedMembers {
  readonly #held = new Map<number, { member: Member; until: number }>();
  readonly #now: () => number;
  readonly #stop: () => void;

  /** Follows `copy`'s deletions in the pattern's zone. */
  constructor(
    copy: ZoneCopy,
    prefix: string,
    pattern: NamePattern,
    now: () => number = () => performance.now(),
  ) {
    this.#now = now;
    const base = namePath(prefix, pattern.zone);
    this.#stop = copy.onChange((change: MirrorChange) => {
      if (change.deleted.length === 0) return;
      for (const kv of change.deleted) {
        const slot = parseSlotKey(base, pattern, kv.key);
        if (slot?.kind !== "lock") continue;
        const memory = copy.get(memoryKey(prefix, pattern, slot.id));
        if (memory && decodeMemoryRecord(memory.value)?.released === kv.lease) continue;
        const children = change.deleted.filter((c) => c.key.startsWith(kv.key + "/"));
        const member = ClusterView.fromKeys([kv, ...children], base, pattern).member(slot.id);
        if (member) this.#held.set(slot.id, { member, until: this.#now() + HOLD_DOWN_MS });
      }
    });
  }

  /** True when no name is held down (the common case: nothing to merge). */
  get empty(): boolean {
    return this.#held.size === 0;
  }

  /** The members held down now (expired ones are dropped). */
  members(): Member[] {
    const now = this.#now();
    const out: Member[] = [];
    for (const [id, entry] of this.#held) {
      if (entry.until <= now) this.#held.delete(id);
      else out.push(entry.member);
    }
    return out;
  }

  /** Stops following the copy. */
  close(): void {
    this.#stop();
  }
}
