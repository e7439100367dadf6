/**
 * The claim's etcd transactions, as pure functions from what the claimer
 * knows to a {@link TxnRequest}, and the zone as one snapshot reads it. No
 * I/O here: claim.ts sends these; txns_test.ts checks them without etcd.
 *
 * @module
 */

import type { Op, TxnRequest } from "../../etcd/kv.ts";
import type { KeyValue } from "../../etcd/types.ts";
import type { NamePattern } from "./pattern.ts";
import type { RoleMap } from "./roles.ts";
import {
  addressKey,
  allocateIds,
  decodeLock,
  decodeMemory,
  decodeQueue,
  encodeAddress,
  encodeLock,
  encodeMemory,
  encodeQueue,
  lockKey,
  memoryKey,
  parseSlotKey,
  type QueueEntry,
  type SlotKey,
} from "./records.ts";

/** What every claim transaction needs to know about this node. */
export interface ClaimSubject {
  /** The name pattern whose IDs are claimed. */
  pattern: NamePattern;
  /** etcd key prefix ("/skydns"). */
  prefix: string;
  /** This node's identity, written in its queue entry and lock. */
  identity: string;
  /** The addresses its A/AAAA records publish. */
  addresses: readonly string[];
  /** The service port its SRV record publishes, when set. */
  port?: number;
  /** The role this node claims in, recorded in its queue entry; undefined: any. */
  role?: string;
  /** The Corefile's roles: the role of each ID goes into its lock. */
  roles?: RoleMap;
}

/** The zone as one snapshot shows it. */
export interface ZoneSnapshot {
  /** ID -> its lock. */
  locks: Map<number, KeyValue>;
  /** ID -> the keys of its address records. */
  children: Map<number, string[]>;
  /** Identity -> the IDs it held last, ascending. */
  remembered: Map<string, number[]>;
  /** Identity -> the IDs whose lock carries it (a claimer finds its own without decoding every lock). */
  holders: Map<string, number[]>;
  /** Queue key -> the ID the queue assigns it. */
  allocation: Map<string, number>;
  /** Free IDs, ascending. */
  free: number[];
}

/**
 * Joins (or stays in) the zone's queue under `lease`: nothing is read. The
 * queue key's create_revision orders claimers that start together; each
 * learns its place, and the IDs free ahead of it, from the zone's watch-fed
 * copy once the copy has reached this transaction's revision (see
 * zone_view.ts), so etcd sends a claimer O(1) bytes whatever the cluster's
 * size.
 */
export function joinQueue(
  queueKey: string,
  identity: string,
  prefers: readonly number[],
  lease: string,
  role?: string,
): TxnRequest {
  return {
    compare: [],
    success: [
      { put: { key: queueKey, value: encodeQueue(identity, [...prefers], role), lease } },
    ],
  };
}

/** What a key of the zone is, decoded once per {@link KeyValue} object (they are immutable). */
export interface ParsedKey {
  /** Where the key sits in the zone (a lock, address record, remembered ID or queue entry); undefined for keys not of the layout. */
  slot?: SlotKey;
  /** A lock's holder identity. */
  lockIdentity?: string;
  /** A memory record's identity. */
  memory?: string;
  /** A queue record's content. */
  queue?: ReturnType<typeof decodeQueue>;
}

/** Decodings keyed by the copy's immutable key objects, reused from one reading to the next. */
export type ParseCache = WeakMap<KeyValue, ParsedKey>;

function parseKey(
  kv: KeyValue,
  zonePath: string,
  pattern: NamePattern,
  cache: ParseCache | undefined,
): ParsedKey {
  const hit = cache?.get(kv);
  if (hit) return hit;
  const slot = parseSlotKey(zonePath, pattern, kv.key);
  const parsed: ParsedKey = { slot };
  if (slot?.kind === "lock") parsed.lockIdentity = decodeLock(kv.value)?.identity;
  else if (slot?.kind === "memory") parsed.memory = decodeMemory(kv.value);
  else if (slot?.kind === "queue") parsed.queue = decodeQueue(kv.value);
  cache?.set(kv, parsed);
  return parsed;
}

/**
 * Reads a listing of the zone (any order) into a {@link ZoneSnapshot}.
 * `cache` keeps each key's decoding for the next reading of the same copy.
 */
export function readZone(
  kvs: readonly KeyValue[],
  zonePath: string,
  pattern: NamePattern,
  limit: number,
  roles?: RoleMap,
  cache?: ParseCache,
): ZoneSnapshot {
  const locks = new Map<number, KeyValue>();
  const children = new Map<number, string[]>();
  const remembered = new Map<string, number[]>();
  const holders = new Map<string, number[]>();
  const queued: [KeyValue, NonNullable<ParsedKey["queue"]>][] = [];
  for (const kv of kvs) {
    const parsed = parseKey(kv, zonePath, pattern, cache);
    const slot = parsed.slot;
    if (slot?.kind === "lock") {
      locks.set(slot.id, kv);
      const who = parsed.lockIdentity;
      if (who !== undefined) {
        const list = holders.get(who);
        if (list) list.push(slot.id);
        else holders.set(who, [slot.id]);
      }
    } else if (slot?.kind === "address") {
      const list = children.get(slot.id);
      if (list) list.push(kv.key);
      else children.set(slot.id, [kv.key]);
    } else if (slot?.kind === "memory") {
      const who = parsed.memory;
      if (who !== undefined) {
        const list = remembered.get(who);
        if (list) list.push(slot.id);
        else remembered.set(who, [slot.id]);
      }
    } else if (slot?.kind === "queue" && parsed.queue) queued.push([kv, parsed.queue]);
  }
  for (const ids of remembered.values()) ids.sort((a, b) => a - b);
  // Claimers whose identity holds a lock take that one over (or step back): not in the draw.
  const queue: QueueEntry[] = [];
  for (const [kv, entry] of queued) {
    if (holders.has(entry.identity)) continue;
    const allowed = roles?.idsOf(entry.role);
    const memory = remembered.get(entry.identity);
    queue.push({
      key: kv.key,
      createRevision: kv.createRevision,
      identity: entry.identity,
      prefers: memory ? [...entry.prefers, ...memory] : entry.prefers,
      ...(allowed ? { allowed: new Set(allowed) } : {}),
    });
  }
  const free: number[] = [];
  for (let id = 1; id <= limit; id++) if (!locks.has(id)) free.push(id);
  for (const ids of holders.values()) ids.sort((a, b) => a - b);
  return { locks, children, remembered, holders, allocation: allocateIds(queue, free), free };
}

/** A claim transaction and the lock it writes. */
export interface ClaimWrite {
  /** The transaction: if the lock is absent, put the lock and the address records. */
  request: TxnRequest;
  /** The lock key. */
  key: string;
  /** The name claimed ("worker4.tf.local."). */
  name: string;
  /** When the claim was made (ISO 8601), as the lock records it. */
  claimedAt: string;
}

/**
 * The writes of a claim of `id` under `lease`: the lock, one record per
 * address, the "last holder" record, deletes of an earlier holder's address
 * records that ours do not overwrite, and leaving the queue. `guard` is the
 * condition on the lock: `{ createRevision: 0 }` for a free slot, `{
 * modRevision }` to take over a lock left by an earlier instance with our
 * identity.
 */
export function claimTxn(
  subject: ClaimSubject,
  id: number,
  lease: string,
  guard: { createRevision: 0 } | { modRevision: number },
  leftovers: readonly string[],
  queueKey: string,
  claimedAt: string,
): ClaimWrite {
  const { pattern, prefix, identity, addresses, port } = subject;
  const key = lockKey(prefix, pattern, id);
  const name = pattern.render(id);
  const role = subject.roles?.roleOf(id) || undefined;
  const ops: Op[] = [
    {
      put: {
        key,
        value: encodeLock({ id, name, identity, role, addresses: [...addresses], port, claimedAt }),
        lease,
      },
    },
    // Who held the ID last, without a lease: a restart prefers it.
    { put: { key: memoryKey(prefix, pattern, id), value: encodeMemory(identity, claimedAt) } },
  ];
  const written = new Set<string>([key]);
  addresses.forEach((address, i) => {
    const child = addressKey(key, i);
    written.add(child);
    ops.push({ put: { key: child, value: encodeAddress(address, port), lease } });
  });
  for (const old of leftovers) if (!written.has(old)) ops.push({ delete: { key: old } });
  ops.push({ delete: { key: queueKey } });
  // A lost race reads the lock that won (one key): the copy must reach its revision before the next look.
  return {
    request: { compare: [{ key, ...guard }], success: ops, failure: [{ range: { key } }] },
    key,
    name,
    claimedAt,
  };
}

/** A claim as this node holds it: what ownership checks compare. */
export interface HeldLock {
  /** The ID held. */
  id: number;
  /** The lock key. */
  key: string;
  /** The lease holding it. */
  leaseId: string;
  /** The lock's create_revision. */
  createRevision: number;
  /** The addresses its records should publish (a repair rewrites records that differ). */
  addresses: readonly string[];
  /** The SRV port its records should publish, when set. */
  port?: number;
}

/** The condition "the lock is still ours": same lease and same create_revision. */
function stillOurs(held: HeldLock): TxnRequest["compare"] {
  return [
    { key: held.key, createRevision: held.createRevision },
    { key: held.key, lease: held.leaseId },
  ];
}

/**
 * Rewrites the address records of `held` when the copy shows them changed or
 * missing (`children`: the keys below the lock as they are now); undefined
 * when they are intact. Guarded by the lock, so it never writes for a name
 * this node no longer holds.
 */
export function repairTxn(held: HeldLock, children: readonly KeyValue[]): TxnRequest | undefined {
  const expected = held.addresses.map((address, i) => ({
    key: addressKey(held.key, i),
    value: encodeAddress(address, held.port),
  }));
  const intact = children.length === expected.length &&
    expected.every((e) =>
      children.some((c) => c.key === e.key && c.value === e.value && c.lease === held.leaseId)
    );
  if (intact) return undefined;
  const wanted = new Set(expected.map((e) => e.key));
  return {
    compare: stillOurs(held),
    success: [
      ...expected.map((e): Op => ({ put: { key: e.key, value: e.value, lease: held.leaseId } })),
      ...children.filter((c) => !wanted.has(c.key)).map((c): Op => ({ delete: { key: c.key } })),
    ],
  };
}

/**
 * Gives a name up on purpose: the "last holder" record says which lease was
 * released (so peers drop the name at once instead of holding it down as
 * after an expiry), and the lock and its records go, in one transaction
 * guarded by the lock.
 */
export function releaseTxn(
  subject: ClaimSubject,
  held: HeldLock,
  claimedAt: string,
): TxnRequest {
  const { prefix, pattern, identity } = subject;
  return {
    compare: stillOurs(held),
    success: [
      {
        put: {
          key: memoryKey(prefix, pattern, held.id),
          value: encodeMemory(identity, claimedAt, held.leaseId),
        },
      },
      { delete: { key: held.key + "/", prefix: true } },
      { delete: { key: held.key } },
    ],
  };
}
