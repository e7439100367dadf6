/**
 * loadbalance in front of a backend behind a real listener on 127.0.0.1: what
 * a client sees across queries. (The pure tests are loadbalance_test.ts.)
 */

import assert from "node:assert/strict";
import { Class, type RR, Type } from "../../dns/types.ts";
import { loadbalancePlugin } from "./mod.ts";
import { a, answering, ask, directivesOf, serveChain, setupContext } from "../forward/testkit.ts";

const cname: RR = {
  name: "www.example.",
  type: Type.CNAME,
  class: Class.INET,
  ttl: 60,
  data: "web.example.",
};
const addresses = [1, 2, 3, 4].map((i) => a("web.example.", `192.0.2.${i}`));

Deno.test("loadbalance over sockets: address order changes across queries, CNAME stays first", async () => {
  const backend = answering("etcd", () => [cname, ...addresses]);
  const lb = await loadbalancePlugin.setup(
    setupContext(directivesOf("loadbalance", "loadbalance")),
  );
  const server = serveChain([lb!, backend]);
  try {
    const orders = new Set<string>();
    for (let i = 0; i < 40 && orders.size < 3; i++) {
      const m = await ask(server.port, "www.example.", Type.A);
      assert.equal(m.answer[0].type, Type.CNAME);
      const ips = m.answer.slice(1).map((r) => r.data as string);
      assert.deepEqual([...ips].sort(), ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"]);
      orders.add(ips.join(","));
    }
    assert.ok(orders.size >= 3, `only ${orders.size} orders seen`);
  } finally {
    await server.close();
  }
});
