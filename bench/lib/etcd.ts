/**
 * etcd for the benchmark: a real etcd per section (tests/helpers/etcd.ts),
 * clients, bulk writes, and etcd's own count of the requests it served and
 * the bytes it sent.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Etcd3, IRequestOp } from "etcd3";
import { createClient } from "../../lib/etcd/client.ts";
import { startEtcd, type TestEtcd } from "../../tests/helpers/etcd.ts";
import type { Scope } from "./cleanup.ts";

/** Starts an etcd that `scope` stops (and whose data dir it removes). */
export async function etcdIn(scope: Scope): Promise<TestEtcd> {
  const etcd = await startEtcd();
  scope.defer(() => etcd[Symbol.asyncDispose]());
  return etcd;
}

/** A client (the program's own client factory) that `scope` closes. */
export function clientIn(scope: Scope, endpoint: string): Etcd3 {
  const client = createClient({ endpoints: [endpoint] }, ".");
  scope.defer(() => client.close());
  return client;
}

/** etcd's default --max-txn-ops. */
const TXN_OPS = 128;

/**
 * Puts every key in transactions of 128 puts, a few in flight at once
 * (etcd batches concurrent commits into one fsync).
 */
export async function putMany(
  client: Etcd3,
  entries: readonly [string, string][],
  inFlight = 8,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < entries.length) {
      const batch = entries.slice(next, next + TXN_OPS);
      next += TXN_OPS;
      const success: IRequestOp[] = batch.map(([key, value]) => ({
        request_put: { key: Buffer.from(key), value: Buffer.from(value) },
      }));
      await client.kv.txn({ compare: [], success, failure: [] });
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

/**
 * The number of gRPC request messages etcd has received so far (unary calls
 * plus every message on a stream: watch creates, lease keepalives), from its
 * Prometheus endpoint: the server's view of "etcd requests".
 */
export async function etcdRequestCount(endpoint: string): Promise<number> {
  const res = await fetch(`${endpoint}/metrics`);
  const text = await res.text();
  let total = 0;
  for (const m of text.matchAll(/^grpc_server_msg_received_total\{[^}]*\} (\S+)$/gm)) {
    total += Number(m[1]);
  }
  return total;
}

/**
 * Bytes etcd has sent to gRPC clients so far (responses and watch events),
 * from its /metrics (`etcd_network_client_grpc_sent_bytes_total`): the figure
 * that grew with N² while every claimer listed the queue.
 */
export async function etcdSentBytes(endpoint: string): Promise<number> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  let total = 0;
  for (
    const m of text.matchAll(/^etcd_network_client_grpc_sent_bytes_total(?:\{[^}]*\})? (\S+)$/gm)
  ) {
    total += Number(m[1]);
  }
  return total;
}
