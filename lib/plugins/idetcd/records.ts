/**
 * What idetcd stores in etcd, and the cluster as read back from it.
 *
 * Key layout (SkyDNS paths, so a stock CoreDNS `etcd` plugin serves the same
 * names): the name `worker4.tf.local.` under prefix `/skydns` is
 *
 *     /skydns/local/tf/worker4       {"idetcd":{"id":4,"identity":...}}   the lock
 *     /skydns/local/tf/worker4/ip1   {"host":"10.0.0.4","port":2222}       one per address
 *     /skydns/local/tf/worker4/ip2   {"host":"2001:db8::4","port":2222}
 *     /skydns/local/tf/_idetcd/worker4  {"idetcdLastHolder":{"identity":...}}  no lease
 *     /skydns/local/tf/_idetcd/queue/<lease>  {"idetcdQueue":...}  while claiming
 *
 * all written in one transaction under one lease. The lock has no `host`, so
 * CoreDNS decodes it into an empty service and drops it; CoreDNS answers
 * `worker4.tf.local.` from the `ipN` children (it reads the subtree).
 *
 * @module
 */

import type { KeyValue, KeyValueSource } from "../../etcd/types.ts";
import { splitLabels } from "../../dns/name.ts";
import type { NamePattern } from "./pattern.ts";
import { canonicalIP } from "./addresses.ts";
import { isIPv4, isIPv6 } from "../../go/ip.ts";

/** The etcd path of a DNS name under `prefix` (CoreDNS's msg.Path): labels reversed. */
export function namePath(prefix: string, name: string): string {
  const labels = splitLabels(name.toLowerCase()).reverse();
  const parts = [...prefix.split("/"), ...labels].filter((p) => p !== "");
  return "/" + parts.join("/");
}

/** The key of the lock of `id`. */
export function lockKey(prefix: string, pattern: NamePattern, id: number): string {
  return namePath(prefix, pattern.render(id));
}

/** The key of the `index`-th (0-based) address record below a lock key. */
export function addressKey(lock: string, index: number): string {
  return `${lock}/ip${index + 1}`;
}

/** The folder (below the zone's path) of the lease-less "last holder" records, one per ID. */
export const MEMORY_LABEL = "_idetcd";

/**
 * The key remembering which identity last claimed `id` (no lease, so it
 * outlives the claim; at most `limit` of them). A restarting node prefers a
 * free ID it held last, even after a clean release.
 */
export function memoryKey(prefix: string, pattern: NamePattern, id: number): string {
  return `${namePath(prefix, pattern.zone)}/${MEMORY_LABEL}/${splitLabels(pattern.render(id))[0]}`;
}

/**
 * The value of a memory record (no `host`: CoreDNS ignores it). `released`
 * names the lease of a claim its holder gave up on purpose: peers then drop
 * the name at once instead of holding it down (see handler.ts).
 */
export function encodeMemory(identity: string, claimedAt: string, released?: string): string {
  return JSON.stringify({
    idetcdLastHolder: released === undefined
      ? { identity, claimedAt }
      : { identity, claimedAt, released },
  });
}

/** A memory record's content. */
export interface MemoryRecord {
  /** The sticky identity that last held the ID; it gets the ID back first when it returns. */
  identity: string;
  /** The lease of a claim that was released on purpose. */
  released?: string;
}

/** Reads a memory record; undefined when it is not one. */
export function decodeMemoryRecord(value: string): MemoryRecord | undefined {
  try {
    const inner = (JSON.parse(value) as { idetcdLastHolder?: Record<string, unknown> } | null)
      ?.idetcdLastHolder;
    if (typeof inner?.identity !== "string") return undefined;
    return typeof inner.released === "string"
      ? { identity: inner.identity, released: inner.released }
      : { identity: inner.identity };
  } catch {
    return undefined;
  }
}

/** The identity in a memory record, or undefined. */
export function decodeMemory(value: string): string | undefined {
  return decodeMemoryRecord(value)?.identity;
}

/**
 * The key of a claimer waiting in the zone's queue, one per lease. Claimers
 * that start together order themselves by these keys' create_revision and
 * each computes the same assignment of free IDs ({@link allocateIds}), so a
 * boot storm does not make every node race for the same lowest ID.
 */
export function queueKey(prefix: string, pattern: NamePattern, leaseId: string): string {
  return `${namePath(prefix, pattern.zone)}/${MEMORY_LABEL}/queue/${leaseId}`;
}

/** A queue record's value: who waits, which IDs it asks for first, and the role it claims in. */
export function encodeQueue(identity: string, prefers: number[], role?: string): string {
  return JSON.stringify({
    idetcdQueue: role ? { identity, prefers, role } : { identity, prefers },
  });
}

/** A queue record's content, or undefined. */
export function decodeQueue(
  value: string,
): { identity: string; prefers: number[]; role?: string } | undefined {
  try {
    const inner = (JSON.parse(value) as { idetcdQueue?: Record<string, unknown> } | null)
      ?.idetcdQueue;
    if (typeof inner?.identity !== "string") return undefined;
    const prefers = Array.isArray(inner.prefers)
      ? inner.prefers.filter((p): p is number => Number.isSafeInteger(p))
      : [];
    return typeof inner.role === "string" && inner.role
      ? { identity: inner.identity, prefers, role: inner.role }
      : { identity: inner.identity, prefers };
  } catch {
    return undefined;
  }
}

/** One claimer in the queue, as a snapshot of the zone shows it. */
export interface QueueEntry {
  /** The queue entry's etcd key; {@link allocateIds} maps it to the ID it gets. */
  key: string;
  /** When the entry was written: claimers are served in this order. */
  createRevision: number;
  /** The claimer's sticky identity. */
  identity: string;
  /** IDs it asks for first (its own previous ID, its state file's, the remembered ones). */
  prefers: number[];
  /** The IDs it may take (its role's); undefined: any. */
  allowed?: ReadonlySet<number>;
}

/**
 * Assigns free IDs to queued claimers in queue order (create_revision): each
 * gets its first free preference, else the lowest free ID. Every claimer runs
 * this on its own snapshot; a claimer that finishes removes its entry and its
 * ID together, so the others' assignments do not move.
 */
export function allocateIds(
  queue: readonly QueueEntry[],
  free: readonly number[],
): Map<string, number> {
  const sorted = [...queue].sort((a, b) => a.createRevision - b.createRevision);
  const lowest = [...free].sort((a, b) => a - b);
  const available = new Set(lowest);
  const result = new Map<string, number>();
  let cursor = 0;
  for (const entry of sorted) {
    if (available.size === 0) break;
    const allowed = entry.allowed;
    let pick = entry.prefers.find((id) => available.has(id) && (!allowed || allowed.has(id)));
    if (pick === undefined && !allowed) {
      while (!available.has(lowest[cursor])) cursor++;
      pick = lowest[cursor];
    } else if (pick === undefined) {
      pick = lowest.find((id) => available.has(id) && allowed!.has(id));
    }
    if (pick === undefined) continue; // nothing free in its role
    available.delete(pick);
    result.set(entry.key, pick);
  }
  return result;
}

/** What the lock of a claimed name says about its holder. */
export interface LockInfo {
  /** The numeric ID the holder claimed; the name is the pattern rendered with it. */
  id: number;
  /** The claimed name, fully qualified. */
  name: string;
  /** The holder's sticky identity. */
  identity: string;
  /** The role of the ID (from the Corefile's `role` lines), when any. */
  role?: string;
  /** The advertised addresses. */
  addresses: string[];
  /** The configured service port, when any. */
  port?: number;
  /** When the name was claimed (ISO 8601). */
  claimedAt: string;
}

/** The lock's JSON value. */
export function encodeLock(info: LockInfo): string {
  const { id, name, identity, role, addresses, port, claimedAt } = info;
  return JSON.stringify({ idetcd: { id, name, identity, role, addresses, port, claimedAt } });
}

/** Reads a lock value; undefined when it is not one idetcd wrote. */
export function decodeLock(value: string): LockInfo | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return undefined;
  }
  const inner = (parsed as { idetcd?: unknown } | null)?.idetcd as Record<string, unknown>;
  if (typeof inner !== "object" || inner === null) return undefined;
  if (typeof inner.id !== "number" || typeof inner.identity !== "string") return undefined;
  return {
    id: inner.id,
    name: typeof inner.name === "string" ? inner.name : "",
    identity: inner.identity,
    role: typeof inner.role === "string" && inner.role ? inner.role : undefined,
    addresses: Array.isArray(inner.addresses)
      ? inner.addresses.filter((a): a is string => typeof a === "string")
      : [],
    port: typeof inner.port === "number" ? inner.port : undefined,
    claimedAt: typeof inner.claimedAt === "string" ? inner.claimedAt : "",
  };
}

/** An address record's JSON value (CoreDNS's msg.Service: host, and port for SRV). */
export function encodeAddress(host: string, port?: number): string {
  return JSON.stringify(port === undefined ? { host } : { host, port });
}

/** The `host` of an address record, canonical; undefined when it is not an IP record. */
export function decodeAddress(value: string): string | undefined {
  try {
    const host = (JSON.parse(value) as { host?: unknown } | null)?.host;
    if (typeof host === "string" && (isIPv4(host) || isIPv6(host))) return canonicalIP(host);
  } catch {
    // not JSON: not ours
  }
  return undefined;
}

/** Where a key sits in the zone's layout. */
export type SlotKey =
  | { kind: "lock"; id: number; label: string }
  | { kind: "address"; id: number; label: string; child: string }
  | { kind: "memory"; id: number; label: string }
  | { kind: "queue"; lease: string };

/** Classifies a key below `base` (the zone's path) as a lock or address record of an ID. */
export function parseSlotKey(base: string, pattern: NamePattern, key: string): SlotKey | undefined {
  if (!key.startsWith(base + "/")) return undefined;
  const parts = key.slice(base.length + 1).split("/");
  if (parts.length === 3 && parts[0] === MEMORY_LABEL && parts[1] === "queue") {
    return { kind: "queue", lease: parts[2] };
  }
  if (parts.length === 2 && parts[0] === MEMORY_LABEL) {
    const id = pattern.parse(`${parts[1]}.${pattern.zone}`);
    return id === undefined ? undefined : { kind: "memory", id, label: parts[1] };
  }
  const id = pattern.parse(`${parts[0]}.${pattern.zone}`);
  if (id === undefined) return undefined;
  if (parts.length === 1) return { kind: "lock", id, label: parts[0] };
  if (parts.length === 2 && /^ip[1-9][0-9]*$/.test(parts[1])) {
    return { kind: "address", id, label: parts[0], child: parts[1] };
  }
  return undefined;
}

/** A node holding a name, as the stored records show it. */
export interface Member {
  /** The ID from its lock. */
  id: number;
  /** Lower-case, fully qualified. */
  name: string;
  /** The holder's sticky identity. */
  identity: string;
  /** IPv4 addresses in record order. */
  ipv4: string[];
  /** IPv6 addresses in record order. */
  ipv6: string[];
  /** The service port from its lock; SRV answers fall back to the configured one without it. */
  port?: number;
  /** The lease holding the name. */
  lease: string;
  /** The lock's create revision: the fencing token of this claim, new on every re-claim. */
  createRevision: number;
}

/** Every member of the cluster at one moment, indexed for answering queries. */
export class ClusterView {
  /** Members ordered by ID. */
  readonly members: readonly Member[];
  readonly #byId: Map<number, Member>;
  readonly #byAddress: Map<string, Member[]>;

  /** Sorts `members` by ID in place (the caller hands the array over). */
  constructor(members: Member[]) {
    this.members = members.sort((a, b) => a.id - b.id);
    this.#byId = new Map(members.map((m) => [m.id, m]));
    this.#byAddress = new Map();
    for (const m of this.members) {
      for (const a of [...m.ipv4, ...m.ipv6]) {
        const list = this.#byAddress.get(a) ?? [];
        list.push(m);
        this.#byAddress.set(a, list);
      }
    }
  }

  /** The member holding `id`. */
  member(id: number): Member | undefined {
    return this.#byId.get(id);
  }

  /** Members advertising `address` (canonical text). */
  byAddress(address: string): readonly Member[] {
    return this.#byAddress.get(address) ?? [];
  }

  /** The member whose lock carries `identity` (the lowest ID if several). */
  byIdentity(identity: string): Member | undefined {
    return this.members.find((m) => m.identity === identity);
  }

  /**
   * Builds the view from the keys below `base` (any order). A name counts
   * only when its lock is an idetcd lock; its addresses are the `ipN`
   * children held by the same lease (so leftovers of another holder never show).
   */
  static fromKeys(keys: Iterable<KeyValue>, base: string, pattern: NamePattern): ClusterView {
    const locks = new Map<number, { kv: KeyValue; info: LockInfo }>();
    const children = new Map<number, KeyValue[]>();
    for (const kv of keys) {
      const slot = parseSlotKey(base, pattern, kv.key);
      if (!slot) continue;
      if (slot.kind === "lock") {
        const info = decodeLock(kv.value);
        if (info) locks.set(slot.id, { kv, info });
      } else if (slot.kind === "address") {
        const list = children.get(slot.id) ?? [];
        list.push(kv);
        children.set(slot.id, list);
      }
    }
    const members: Member[] = [];
    for (const [id, { kv, info }] of locks) {
      const ipv4: string[] = [];
      const ipv6: string[] = [];
      const records = (children.get(id) ?? [])
        .filter((c) => c.lease === kv.lease)
        .sort((a, b) => childIndex(a.key) - childIndex(b.key));
      for (const c of records) {
        const host = decodeAddress(c.value);
        if (host === undefined) continue;
        const list = isIPv4(host) ? ipv4 : ipv6;
        if (!list.includes(host)) list.push(host);
      }
      members.push({
        id,
        name: pattern.render(id),
        identity: info.identity,
        ipv4,
        ipv6,
        port: info.port,
        lease: kv.lease,
        createRevision: kv.createRevision,
      });
    }
    return new ClusterView(members);
  }

  /** Builds the view from a mirror (or any KeyValueSource) of the zone. */
  static fromSource(source: KeyValueSource, base: string, pattern: NamePattern): ClusterView {
    return ClusterView.fromKeys(source.range(base + "/"), base, pattern);
  }
}

function childIndex(key: string): number {
  return Number(/\/ip(\d+)$/.exec(key)?.[1] ?? 0);
}
