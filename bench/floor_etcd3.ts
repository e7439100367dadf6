/**
 * A memory floor for the benchmark: a Deno process that loads the etcd3
 * client (and its gRPC stack) the program uses, makes one client, and waits.
 * Its resident size beside a bare Deno process and an idetcd node says how
 * much of the node's footprint the client alone accounts for.
 *
 * Usage: `deno run -A bench/floor_etcd3.ts ENDPOINT`; prints "floor ready".
 *
 * @module
 */

import { Etcd3 } from "etcd3";

const endpoint = Deno.args[0];
if (!endpoint) {
  console.error("usage: floor_etcd3.ts ENDPOINT");
  Deno.exit(2);
}
const client = new Etcd3({ hosts: endpoint });
// One round trip, so the channel and its buffers exist as in a node.
await client.get("/floor").string();
console.log("floor ready");
Deno.addSignalListener("SIGTERM", () => {
  client.close();
  Deno.exit(0);
});
setInterval(() => {}, 60_000);
