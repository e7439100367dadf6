/**
 * `idetcd status`: every ID from 1 to `limit`, who holds it and for how
 * long, read from etcd once (one range read of the zone, then one
 * LeaseTimeToLive per member, sent together).
 *
 * The exit code is for scripts: 0 when every ID 1..limit is claimed,
 * {@link EXIT_MISSING} when some are empty, 1 on errors (etcd unreachable:
 * one line naming the endpoints), 2 on usage errors.
 *
 * `--json` prints one object:
 *
 * ```txt
 * {
 *   "pattern": "worker{{.ID}}.tf.local.",
 *   "zone": "tf.local.",
 *   "limit": 4,
 *   "claimed": 3,                 members holding an ID in 1..limit
 *   "missing": [4],               the empty IDs in 1..limit, ascending
 *   "complete": false,            claimed == limit (exit 0, else 3)
 *   "revision": 42,               etcd's revision of the read
 *   "readAt": "2026-01-01T00:00:00.000Z",
 *   "slots": [                    one per ID 1..limit in ID order, then any member above limit
 *     {"id": 1, "name": "worker1.tf.local.", "role": "chief", "claimed": true,
 *      "addresses": ["10.0.0.1"], "port": 2222, "identity": "node-1",
 *      "claimedAt": "2026-01-01T00:00:00.000Z", "leaseSecondsLeft": 17,
 *      "lease": "7587880537470410766", "fence": 17},
 *     {"id": 4, "name": "worker4.tf.local.", "role": "", "claimed": false}
 *   ]
 * }
 * ```
 *
 * `role` is "" when the ID has none (no `role` line covers it); `port` is
 * left out when the member published none; `claimedAt` is null for a lock
 * without one; `leaseSecondsLeft` is 0 when etcd says the lease has just
 * ended (its keys are about to go); `fence` is the lock's create_revision
 * (the claim's fencing token); a member above `limit` (the Corefile's limit
 * was lowered) carries `"overLimit": true` and counts in neither `claimed`
 * nor `missing`.
 *
 * @module
 */

import type { Etcd3 } from "etcd3";
import { createClient } from "../../etcd/client.ts";
import { Etcd3Kv } from "../../etcd/kv.ts";
import type { KeyValue } from "../../etcd/types.ts";
import { etcdReadError, zonePath } from "./members.ts";
import { ClusterView, decodeLock, lockKey, namePath } from "./records.ts";
import type { IdetcdConfig } from "./setup.ts";

/** Exit code of `idetcd status` when some IDs of 1..limit are empty. */
export const EXIT_MISSING = 3;

/** A claimed ID. */
export interface ClaimedSlot {
  /** The ID, in 1..limit unless `overLimit`. */
  id: number;
  /** Fully qualified ("worker4.tf.local."). */
  name: string;
  /** Its role; "" when no `role` line covers the ID. */
  role: string;
  /** Always true here: the discriminant of {@link Slot}. */
  claimed: true;
  /** The addresses the member's records advertise: IPv4 first, then IPv6. */
  addresses: string[];
  /** The port the member published, if any. */
  port?: number;
  /** The sticky identity the member claimed with: which machine holds the ID (see identity.ts). */
  identity: string;
  /** When the name was claimed (the lock's claimedAt, ISO 8601); null when the lock has none. */
  claimedAt: string | null;
  /** Whole seconds etcd reports left on the lease. */
  leaseSecondsLeft: number;
  /** The lease holding the name (decimal ID). */
  lease: string;
  /** The claim's fencing token: the lock's create_revision. */
  fence: number;
  /** Present (true) when the ID is above the Corefile's `limit`. */
  overLimit?: true;
}

/** An ID nobody holds. */
export interface EmptySlot {
  /** The empty ID, in 1..limit. */
  id: number;
  /** The name the ID would have. */
  name: string;
  /** The ID's role; "" when no `role` line covers it. */
  role: string;
  /** Always false here: the discriminant of {@link Slot}. */
  claimed: false;
}

/** One ID's line of the report. */
export type Slot = ClaimedSlot | EmptySlot;

/** What `idetcd status --json` prints; see the module doc. */
export interface StatusReport {
  /** The `pattern` as written in the Corefile ("worker{{.ID}}.tf.local."). */
  pattern: string;
  /** The pattern's zone ("tf.local."). */
  zone: string;
  /** The Corefile's `limit`: the IDs 1..limit are the ones that should be claimed. */
  limit: number;
  /** Members holding an ID in 1..limit. */
  claimed: number;
  /** The empty IDs of 1..limit, ascending. */
  missing: number[];
  /** True when every ID 1..limit is claimed. */
  complete: boolean;
  /** etcd's revision of the read. */
  revision: number;
  /** When the read was made (ISO 8601). */
  readAt: string;
  /** One per ID 1..limit in ID order, then any member above `limit` (`overLimit`). */
  slots: Slot[];
}

/**
 * The report from one read of the zone's keys (any order) and the seconds
 * left on each lease. Pure, so status_test.ts checks it without etcd.
 */
export function buildStatus(
  config: Pick<IdetcdConfig, "limit" | "pattern" | "prefix" | "roles">,
  kvs: readonly KeyValue[],
  leaseLeft: ReadonlyMap<string, number>,
  read: { revision: number; at: Date },
): StatusReport {
  const base = namePath(config.prefix, config.pattern.zone);
  const view = ClusterView.fromKeys(kvs, base, config.pattern);
  const byKey = new Map(kvs.map((kv) => [kv.key, kv]));
  const claimedSlot = (id: number): ClaimedSlot | undefined => {
    const m = view.member(id);
    if (!m) return undefined;
    const lock = byKey.get(lockKey(config.prefix, config.pattern, id));
    const info = lock ? decodeLock(lock.value) : undefined;
    return {
      id,
      name: m.name,
      role: config.roles.roleOf(id),
      claimed: true,
      addresses: [...m.ipv4, ...m.ipv6],
      ...(m.port === undefined ? {} : { port: m.port }),
      identity: m.identity,
      claimedAt: info?.claimedAt || null,
      leaseSecondsLeft: Math.max(0, leaseLeft.get(m.lease) ?? 0),
      lease: m.lease,
      fence: m.createRevision,
    };
  };
  const slots: Slot[] = [];
  const missing: number[] = [];
  for (let id = 1; id <= config.limit; id++) {
    const slot = claimedSlot(id);
    if (slot) slots.push(slot);
    else {
      missing.push(id);
      slots.push({
        id,
        name: config.pattern.render(id),
        role: config.roles.roleOf(id),
        claimed: false,
      });
    }
  }
  for (const m of view.members) {
    if (m.id > config.limit) slots.push({ ...claimedSlot(m.id)!, overLimit: true });
  }
  return {
    pattern: config.pattern.source,
    zone: config.pattern.zone,
    limit: config.limit,
    claimed: config.limit - missing.length,
    missing,
    complete: missing.length === 0,
    revision: read.revision,
    readAt: read.at.toISOString(),
    slots,
  };
}

/** LeaseTimeToLive calls in flight at once: a zone of 100,000 members must not open 100,000 calls. */
const TTL_CONCURRENCY = 64;

/**
 * Seconds left on each lease, asked together (etcd has no batched
 * LeaseTimeToLive): 0 for a lease etcd no longer has (3.4 answers TTL -1,
 * others fail with "lease not found").
 */
export async function leaseSecondsLeft(
  client: Etcd3,
  leases: Iterable<string>,
  timeoutMs = 5_000,
): Promise<Map<string, number>> {
  const todo = [...new Set(leases)].filter((l) => l !== "0");
  const result = new Map<string, number>();
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const lease = todo[next++];
      try {
        const res = await client.leaseClient.leaseTimeToLive(
          { ID: lease },
          { deadline: Date.now() + timeoutMs },
        );
        result.set(lease, Math.max(0, Number(res.TTL)));
      } catch (err) {
        if (!/lease not found/i.test((err as Error).message)) throw err;
        result.set(lease, 0);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(TTL_CONCURRENCY, todo.length) }, worker));
  return result;
}

/** One read of the zone: its keys, and the store's revision they are at. */
async function rangeZone(client: Etcd3, config: IdetcdConfig) {
  // A txn's answer carries the header's revision, which Etcd3Kv.range leaves out.
  const res = await new Etcd3Kv(client).txn({
    compare: [],
    success: [{ range: { key: zonePath(config) + "/", prefix: true } }],
  });
  return { kvs: res.ranges[0] ?? [], revision: res.revision };
}

/**
 * Reads the zone's members from etcd once (no identity needed, unlike
 * members.ts readMembers: a report must work on any machine with the
 * Corefile); throws one line naming the endpoints when it cannot.
 */
export async function readView(config: IdetcdConfig): Promise<ClusterView> {
  const client = createClient(config.etcd, config.configDir);
  try {
    const { kvs } = await rangeZone(client, config);
    return ClusterView.fromKeys(kvs, zonePath(config), config.pattern);
  } catch (err) {
    throw etcdReadError(config, err);
  } finally {
    client.close();
  }
}

/** Reads the zone and its leases from etcd once; throws one line naming the endpoints when it cannot. */
export async function readStatus(config: IdetcdConfig): Promise<StatusReport> {
  const client = createClient(config.etcd, config.configDir);
  try {
    const { kvs, revision } = await rangeZone(client, config);
    const at = new Date();
    const view = ClusterView.fromKeys(kvs, zonePath(config), config.pattern);
    const left = await leaseSecondsLeft(client, view.members.map((m) => m.lease));
    return buildStatus(config, kvs, left, { revision, at });
  } catch (err) {
    throw etcdReadError(config, err);
  } finally {
    client.close();
  }
}

/** IDs as compact ranges: [1, 2, 3, 5] -> "1-3, 5". */
export function idRanges(ids: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < ids.length;) {
    let j = i;
    while (j + 1 < ids.length && ids[j + 1] === ids[j] + 1) j++;
    parts.push(j === i ? String(ids[i]) : `${ids[i]}-${ids[j]}`);
    i = j + 1;
  }
  return parts.join(", ");
}

/** A duration as a person reads it: 42s, 5m12s, 3h05m, 2d03h. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const pad = (n: number) => String(n).padStart(2, "0");
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${pad(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86400)}d${pad(Math.floor(s / 3600) % 24)}h`;
}

/** Runs of at least this many empty IDs share one table row, so a limit of 100,000 stays readable. */
const COLLAPSE_EMPTY = 3;

/**
 * The readable table: one row per ID (a run of empty IDs shares one row),
 * the ROLE column only when some ID has a role, then a summary line.
 */
export function formatStatus(report: StatusReport): string {
  const now = Date.parse(report.readAt);
  const withRoles = report.slots.some((s) => s.role !== "");
  const header = ["ID", "NAME", ...(withRoles ? ["ROLE"] : []), "ADDRESSES", "IDENTITY"];
  header.push("CLAIMED SINCE", "LEASE");
  const rows: string[][] = [header];
  const slots = report.slots;
  for (let i = 0; i < slots.length; i++) {
    const s = slots[i];
    const role = withRoles ? [s.role || "-"] : [];
    if (!s.claimed) {
      // A run of empty IDs with the same role: one row.
      let j = i;
      while (
        j + 1 < slots.length && !slots[j + 1].claimed && slots[j + 1].id === slots[j].id + 1 &&
        slots[j + 1].role === s.role
      ) j++;
      if (j - i + 1 >= COLLAPSE_EMPTY) {
        rows.push([
          `${s.id}-${slots[j].id}`,
          // Same pattern, same zone: only the first labels differ ("worker3..worker6.tf.local.").
          `${s.name.split(".")[0]}..${slots[j].name}`,
          ...role,
          `(${j - i + 1} empty)`,
        ]);
        i = j;
      } else rows.push([String(s.id), s.name, ...role, "(empty)"]);
      continue;
    }
    const claimedMs = s.claimedAt === null ? NaN : Date.parse(s.claimedAt);
    const since = s.claimedAt === null
      ? "?"
      : Number.isFinite(claimedMs)
      ? `${s.claimedAt.replace(/\.\d+Z$/, "Z")} (${formatAge(now - claimedMs)})`
      : s.claimedAt;
    rows.push([
      String(s.id),
      s.name,
      ...role,
      s.addresses.join(",") || "-",
      s.identity,
      since,
      `${s.leaseSecondsLeft}s${s.overLimit ? "  (above limit)" : ""}`,
    ]);
  }
  const widths = header.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  const lines = rows.map((r) =>
    r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join("  ").trimEnd()
  );
  let summary = `${report.claimed}/${report.limit} claimed`;
  if (report.missing.length) summary += `; empty: ${idRanges(report.missing)}`;
  const over = slots.filter((s) => s.claimed && s.overLimit).map((s) => s.id);
  if (over.length) summary += `; above limit ${report.limit}: ${idRanges(over)}`;
  return lines.join("\n") + "\n" + summary + "\n";
}
