import { deepStrictEqual as equal } from "node:assert/strict";
import { synthesizedSoa } from "./soa.ts";
import { Class, Type } from "./types.ts";

Deno.test("synthesizedSoa: CoreDNS's plugin.SOA fields, the serial in whole seconds", () => {
  equal(synthesizedSoa("x.", { nowSeconds: 1700000000.9, ttl: 30, minimum: 5 }), {
    name: "x.",
    type: Type.SOA,
    class: Class.INET,
    ttl: 30,
    data: {
      mname: "ns.dns.x.",
      rname: "hostmaster.x.",
      serial: 1700000000,
      refresh: 7200,
      retry: 1800,
      expire: 86400,
      minimum: 5,
    },
  });
});

Deno.test("synthesizedSoa: the root zone's names are dnsutil.Join's", () => {
  const data = synthesizedSoa(".", { nowSeconds: 0, ttl: 1, minimum: 1 }).data as {
    mname: string;
    rname: string;
  };
  equal([data.mname, data.rname], ["ns.dns.", "hostmaster."]);
});
