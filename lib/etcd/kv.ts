/**
 * The narrow view of etcd that the claim uses: transactions, ranges and one
 * lease's life (grant, keep-alive, revoke), in this project's own vocabulary
 * (string keys, {@link KeyValue}) instead of etcd3's Buffers and protobuf
 * shapes. {@link Etcd3Kv} implements it over an `npm:etcd3` client; unit
 * tests may implement it in memory.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  CompareResult,
  CompareTarget,
  type Etcd3,
  EtcdLeaseInvalidError,
  type IKeyValue,
  type IRequestOp,
} from "etcd3";
import type { KeyValue } from "./types.ts";

/** One condition of a transaction. */
export type Compare =
  /** The key's create_revision (0: the key does not exist). */
  | { key: string; createRevision: number }
  /** The key's mod_revision. */
  | { key: string; modRevision: number }
  /** The key's lease ID ("0": no lease). */
  | { key: string; lease: string };

/** One operation of a transaction. */
export type Op =
  /** Writes `value` under `key`, attached to `lease` when one is given and not "0". */
  | { put: { key: string; value: string; lease?: string } }
  /** Deletes `key`; with `prefix`, every key starting with it. */
  | { delete: { key: string; prefix?: boolean } }
  /** Reads `key`; with `prefix`, every key starting with it. */
  | { range: { key: string; prefix?: boolean } };

/** A transaction: if every compare holds, `success` runs, else `failure`. */
export interface TxnRequest {
  /** The conditions, all of which must hold (etcd ANDs them); empty always holds. */
  compare: Compare[];
  /** The ops run, in order, when every compare holds. */
  success: Op[];
  /** The ops run, in order, when a compare fails; absent runs none. */
  failure?: Op[];
}

/** What a transaction did. */
export interface TxnResult {
  /** True when every compare held, so `success` ran; false when `failure` ran. */
  succeeded: boolean;
  /** The store's revision after the transaction. */
  revision: number;
  /** The keys each range op of the branch that ran read, in op order. */
  ranges: KeyValue[][];
}

/** A granted lease. */
export interface GrantedLease {
  /** Decimal lease ID. */
  id: string;
  /** TTL etcd granted, seconds. */
  ttl: number;
}

/** The etcd calls of a claim. Every call has a deadline and rejects when it passes. */
export interface EtcdKv {
  /** Runs one transaction atomically: the compares, then the branch they pick. */
  txn(request: TxnRequest, timeoutMs?: number): Promise<TxnResult>;
  /** Reads `key` (with `prefix`, every key starting with it). */
  range(key: string, options?: { prefix?: boolean; timeoutMs?: number }): Promise<KeyValue[]>;
  /** Grants a new lease of `ttlSeconds`; the TTL etcd granted is in the answer and may differ. */
  grant(ttlSeconds: number, timeoutMs?: number): Promise<GrantedLease>;
  /** One keep-alive exchange: the TTL etcd reports, 0 when the lease is gone. */
  keepAlive(id: string, timeoutMs: number): Promise<number>;
  /** Revokes a lease; resolves also when etcd no longer has it. */
  revoke(id: string, timeoutMs?: number): Promise<void>;
}

/** How a failed call failed, as far as the claim cares. */
export type EtcdFailure =
  /** The lease named by the call does not exist (expired or revoked). */
  | "lease-not-found"
  /** etcd's NOSPACE alarm is raised: it refuses writes and lease grants. */
  | "no-space"
  /** Anything else: unreachable, timed out, refused. */
  | "other";

/** Classifies an error thrown by an {@link EtcdKv} call. */
export function classifyFailure(err: unknown): EtcdFailure {
  if (err instanceof EtcdLeaseInvalidError) return "lease-not-found";
  const text = err instanceof Error ? err.message : String(err);
  if (/requested lease not found/i.test(text)) return "lease-not-found";
  if (/database space exceeded|NOSPACE/i.test(text)) return "no-space";
  return "other";
}

/** The smallest key greater than every key starting with `prefix`. */
export function prefixEnd(prefix: string): Buffer {
  const bytes = Buffer.from(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i] < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i]++;
      return end;
    }
  }
  return Buffer.from([0]);
}

/** An etcd3 key-value as a {@link KeyValue}. */
export function fromEtcd3(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString(),
    value: kv.value?.toString() ?? "",
    lease: kv.lease ? String(kv.lease) : "0",
    createRevision: Number(kv.create_revision),
    modRevision: Number(kv.mod_revision),
  };
}

function toCompare(c: Compare): NonNullable<Parameters<Etcd3["kv"]["txn"]>[0]["compare"]>[number] {
  const key = Buffer.from(c.key);
  if ("createRevision" in c) {
    return {
      key,
      target: CompareTarget.Create,
      result: CompareResult.Equal,
      create_revision: c.createRevision,
    };
  }
  if ("modRevision" in c) {
    return {
      key,
      target: CompareTarget.Mod,
      result: CompareResult.Equal,
      mod_revision: c.modRevision,
    };
  }
  return { key, target: CompareTarget.Lease, result: CompareResult.Equal, lease: c.lease };
}

function toOp(op: Op): IRequestOp {
  if ("put" in op) {
    const { key, value, lease } = op.put;
    return {
      request_put: {
        key: Buffer.from(key),
        value: Buffer.from(value),
        ...(lease && lease !== "0" ? { lease } : {}),
      },
    };
  }
  if ("delete" in op) {
    const { key, prefix } = op.delete;
    return {
      request_delete_range: {
        key: Buffer.from(key),
        ...(prefix ? { range_end: prefixEnd(key) } : {}),
      },
    };
  }
  const { key, prefix } = op.range;
  return {
    request_range: { key: Buffer.from(key), ...(prefix ? { range_end: prefixEnd(key) } : {}) },
  };
}

/** {@link EtcdKv} over an `npm:etcd3` client (which the caller owns and closes). */
export class Etcd3Kv implements EtcdKv {
  readonly #client: Etcd3;
  /** Calls made, for the claim's request counter. */
  requests = 0;

  /** Wraps `client`. */
  constructor(client: Etcd3) {
    this.#client = client;
  }

  /**
   * A call's options: with `timeoutMs`, one deadline for the whole call; without,
   * the client's own per-attempt deadline (createClient gives each attempt 5 s), so
   * that a retry on the next etcd member is not born expired.
   */
  #deadline(timeoutMs?: number): { deadline: number } | undefined {
    return timeoutMs === undefined ? undefined : { deadline: Date.now() + timeoutMs };
  }

  /** See {@link EtcdKv.txn}. */
  async txn(request: TxnRequest, timeoutMs?: number): Promise<TxnResult> {
    this.requests++;
    const res = await this.#client.kv.txn({
      compare: request.compare.map(toCompare),
      success: request.success.map(toOp),
      failure: (request.failure ?? []).map(toOp),
    }, this.#deadline(timeoutMs));
    const ranges: KeyValue[][] = [];
    for (const r of res.responses ?? []) {
      if (r.response_range) ranges.push(r.response_range.kvs.map(fromEtcd3));
    }
    return { succeeded: res.succeeded, revision: Number(res.header.revision), ranges };
  }

  /** See {@link EtcdKv.range}. */
  async range(
    key: string,
    options: { prefix?: boolean; timeoutMs?: number } = {},
  ): Promise<KeyValue[]> {
    this.requests++;
    const res = await this.#client.kv.range(
      { key: Buffer.from(key), ...(options.prefix ? { range_end: prefixEnd(key) } : {}) },
      this.#deadline(options.timeoutMs),
    );
    return res.kvs.map(fromEtcd3);
  }

  /**
   * Every key starting with `prefix` as it was at `revision` (0: now), and
   * the revision read; rejects when that revision was compacted.
   */
  async rangeAt(prefix: string, revision: number): Promise<{ kvs: KeyValue[]; revision: number }> {
    this.requests++;
    const res = await this.#client.kv.range(
      {
        key: Buffer.from(prefix),
        range_end: prefixEnd(prefix),
        ...(revision > 0 ? { revision } : {}),
      },
      this.#deadline(),
    );
    return {
      kvs: res.kvs.map(fromEtcd3),
      revision: revision > 0 ? revision : Number(res.header.revision),
    };
  }

  /** See {@link EtcdKv.grant}. */
  async grant(ttlSeconds: number, timeoutMs?: number): Promise<GrantedLease> {
    this.requests++;
    const res = await this.#client.leaseClient.leaseGrant(
      { TTL: ttlSeconds, ID: 0 },
      this.#deadline(timeoutMs),
    );
    if (res.error) throw new Error(`lease grant: ${res.error}`);
    return { id: String(res.ID), ttl: Number(res.TTL) };
  }

  /** See {@link EtcdKv.keepAlive}: one exchange on a short-lived stream. */
  async keepAlive(id: string, timeoutMs: number): Promise<number> {
    this.requests++;
    const stream = await this.#client.leaseClient.leaseKeepAlive();
    try {
      return await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("keepalive timed out")), timeoutMs);
        stream.on("data", (res) => {
          clearTimeout(timer);
          resolve(Number(res.TTL));
        });
        stream.on("error", (err) => {
          clearTimeout(timer);
          reject(err);
        });
        stream.on("end", () => {
          clearTimeout(timer);
          reject(new Error("keepalive stream ended"));
        });
        stream.write({ ID: id });
      });
    } finally {
      try {
        stream.end();
        (stream as unknown as { cancel?: () => void }).cancel?.();
      } catch {
        // already closed
      }
    }
  }

  /** See {@link EtcdKv.revoke}. */
  async revoke(id: string, timeoutMs?: number): Promise<void> {
    this.requests++;
    try {
      await this.#client.leaseClient.leaseRevoke({ ID: id }, this.#deadline(timeoutMs));
    } catch (err) {
      if (classifyFailure(err) !== "lease-not-found") throw err;
    }
  }
}
