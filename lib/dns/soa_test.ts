import { deepStrictEqual as equal } from "node:assert/strict";
import { synthesizedSoa } from "./soa.ts";
import { Class, type SOAData, Type } from "./types.ts";

// The fixed fields (refresh, retry, expire) are asserted through the etcd
// plugin's soaRecord in lib/plugins/etcd/lookup_test.ts.

Deno.test("synthesizedSoa: the backend's TTL and minimum; the serial is whole seconds as uint32", () => {
  const rr = synthesizedSoa("tf.local.", { nowSeconds: 2 ** 32 + 7.9, ttl: 30, minimum: 5 });
  equal([rr.name, rr.type, rr.class, rr.ttl], ["tf.local.", Type.SOA, Class.INET, 30]);
  const data = rr.data as SOAData;
  equal([data.serial, data.minimum], [7, 5]);
  equal([data.mname, data.rname], ["ns.dns.tf.local.", "hostmaster.tf.local."]);
});

Deno.test("synthesizedSoa: the root zone's names are dnsutil.Join's", () => {
  const data = synthesizedSoa(".", { nowSeconds: 0, ttl: 1, minimum: 1 }).data as SOAData;
  equal([data.mname, data.rname], ["ns.dns.", "hostmaster."]);
});
