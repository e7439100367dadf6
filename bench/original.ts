/**
 * The original idetcd's claim (jiachengxu/idetcd, 2018), re-created only to
 * measure it: for each ID 1..limit, Get(name); if the count is 0, Grant a 20 s
 * lease and Put(name, value, lease). No transaction, so claimers that start
 * together hand out the same name. Keys are bare FQDNs in etcd's root, as the
 * original wrote them.
 *
 * As a program (`deno run -A bench/original.ts ENDPOINT LIMIT IDENTITY`) it
 * claims once, prints `claimed NAME`, and holds the name until SIGTERM: the
 * "original" side of the claim storm with real processes.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import type { Etcd3 } from "etcd3";
import { createClient } from "../lib/etcd/client.ts";

/** The result of one original-style claim. */
export interface OriginalClaim {
  /** The claimed name, or undefined when every ID looked taken. */
  name?: string;
  /** etcd requests made (gets, grant, put). */
  requests: number;
}

/** The name of ID `id` in the original's pattern (`worker{{.ID}}.tf.local.`). */
export function originalName(id: number): string {
  return `worker${id}.tf.local.`;
}

/** Claims the first ID whose key does not exist: get, then grant and put, no txn. */
export async function originalClaim(
  client: Etcd3,
  limit: number,
  value: string,
): Promise<OriginalClaim> {
  let requests = 0;
  for (let id = 1; id <= limit; id++) {
    const name = originalName(id);
    requests++;
    const got = await client.kv.range({ key: Buffer.from(name) });
    if (Number(got.count) !== 0) continue;
    requests++;
    const lease = await client.leaseClient.leaseGrant({ TTL: 20 });
    requests++;
    await client.kv.put({ key: Buffer.from(name), value: Buffer.from(value), lease: lease.ID });
    return { name, requests };
  }
  return { requests };
}

if (import.meta.main) {
  const [endpoint, limit, identity] = Deno.args;
  if (!endpoint || !limit || !identity) {
    console.error("usage: original.ts ENDPOINT LIMIT IDENTITY");
    Deno.exit(2);
  }
  const client = createClient({ endpoints: [endpoint] }, ".");
  const claim = await originalClaim(client, Number(limit), identity);
  console.log(claim.name ? `claimed ${claim.name}` : "no free name");
  // Hold the name like a node (the original kept the process, and the lease, alive).
  await new Promise<void>((resolve) => {
    Deno.addSignalListener("SIGTERM", resolve);
    Deno.addSignalListener("SIGINT", resolve);
  });
  client.close();
  Deno.exit(0);
}
