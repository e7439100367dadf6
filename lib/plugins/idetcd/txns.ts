/**
 * The claim's etcd transactions, as pure functions from what the claimer
 * knows to a {@link TxnRequest}, and the zone as one snapshot reads it. No
 * I/O here: driver.ts sends these; txns_test.ts checks them without etcd.
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
} from "./records.ts";

/** What every claim transaction needs to know about this node. */
export interface ClaimSubject {
  pattern: NamePattern;
  /** etcd key prefix ("/skydns"). */
  prefix: string;
  identity: string;
  addresses: readonly string[];
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
  /** Queue key -> the ID the queue assigns it. */
  allocation: Map<string, number>;
  /** Free IDs, ascending. */
  free: number[];
}

/**
 * Joins (or stays in) the zone's queue under `lease` and lists the zone, in
 * one transaction: the queue key's create_revision orders claimers that start
 * together, and the listing is the snapshot they all compute the same
 * assignment from.
 */
export function joinQueueAndList(
  zonePath: string,
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
      { range: { key: zonePath + "/", prefix: true } },
    ],
  };
}

/** Reads a listing of the zone (any order) into a {@link ZoneSnapshot}. */
export function readZone(
  kvs: readonly KeyValue[],
  zonePath: string,
  pattern: NamePattern,
  limit: number,
  roles?: RoleMap,
): ZoneSnapshot {
  const locks = new Map<number, KeyValue>();
  const children = new Map<number, string[]>();
  const remembered = new Map<string, number[]>();
  const queued: KeyValue[] = [];
  for (const kv of kvs) {
    const slot = parseSlotKey(zonePath, pattern, kv.key);
    if (slot?.kind === "lock") locks.set(slot.id, kv);
    else if (slot?.kind === "address") {
      children.set(slot.id, [...(children.get(slot.id) ?? []), kv.key]);
    } else if (slot?.kind === "memory") {
      const who = decodeMemory(kv.value);
      if (who !== undefined) remembered.set(who, [...(remembered.get(who) ?? []), slot.id]);
    } else if (slot?.kind === "queue") queued.push(kv);
  }
  for (const ids of remembered.values()) ids.sort((a, b) => a - b);
  // Claimers whose identity holds a lock take that one over (or step back): not in the draw.
  const holding = new Set([...locks.values()].map((kv) => decodeLock(kv.value)?.identity));
  const queue: QueueEntry[] = [];
  for (const kv of queued) {
    const entry = decodeQueue(kv.value);
    if (!entry || holding.has(entry.identity)) continue;
    const allowed = roles?.idsOf(entry.role);
    queue.push({
      key: kv.key,
      createRevision: kv.createRevision,
      identity: entry.identity,
      prefers: [...entry.prefers, ...(remembered.get(entry.identity) ?? [])],
      ...(allowed ? { allowed: new Set(allowed) } : {}),
    });
  }
  const free: number[] = [];
  for (let id = 1; id <= limit; id++) if (!locks.has(id)) free.push(id);
  return { locks, children, remembered, allocation: allocateIds(queue, free), free };
}

/** A claim transaction and the lock it writes. */
export interface ClaimWrite {
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
  return { request: { compare: [{ key, ...guard }], success: ops }, key, name, claimedAt };
}

/** A claim as this node holds it: what ownership checks compare. */
export interface HeldLock {
  id: number;
  /** The lock key. */
  key: string;
  /** The lease holding it. */
  leaseId: string;
  /** The lock's create_revision. */
  createRevision: number;
  addresses: readonly string[];
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
