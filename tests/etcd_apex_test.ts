/**
 * A name that exists is never NXDOMAIN (RFC 8020): the apex of an `etcd`
 * zone, asked every qtype IANA can assign below 1024, TA and DLV, and the
 * private range, over real UDP against the real program, in a zone with
 * records and in an empty one (lib/plugins/etcd/lookup_test.ts asks the
 * lookup itself all 65,536); and its empty
 * non-terminals, asked the types resolvers ask. (CoreDNS answers NXDOMAIN at
 * the apex for CNAME, PTR and, without `dns/ns`, NS; a resolver then caches
 * "no such name" for the zone.)
 */

import assert from "node:assert/strict";
import { Etcd3 } from "etcd3";
import { Rcode, type SOAData, Type } from "../lib/dns/types.ts";
import { decodeMessage, encodeQuery } from "../lib/dns/wire.ts";
import { startEtcd } from "./helpers/etcd.ts";
import { mapLimit, UdpClient } from "./helpers/exchange.ts";
import { startServer, writeCorefile } from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";

Deno.test("etcd apex: every qtype, in a zone with records and an empty one, is never NXDOMAIN", async () => {
  await using etcd = await startEtcd();
  const client = new Etcd3({ hosts: etcd.endpoint });
  const port = await freePort();
  const conf = await writeCorefile(
    `.:${port} {\n    etcd full.test empty.test {\n        endpoint ${etcd.endpoint}\n    }\n}\n`,
  );
  const udp = new UdpClient("127.0.0.1", port);
  try {
    await client.put("/skydns/test/full/www").value(`{"host":"10.0.0.1"}`);
    await client.put("/skydns/test/full/dns/apex").value(`{"host":"10.0.0.2"}`);
    await client.put("/skydns/test/full/_tcp/_http/a").value(`{"host":"www.full.test","port":80}`);
    await using _server = await startServer(conf);
    const ask = async (name: string, type: number) => {
      const reply = await udp.exchange(encodeQuery(1, name, type, { udpSize: 1232 }));
      assert.ok(reply, `${name} type ${type}: no reply`);
      return decodeMessage(reply);
    };
    await waitFor(async () => (await ask("www.full.test.", Type.A)).answer.length === 1, {
      what: "the zone loaded",
    });
    const types = [
      ...Array.from({ length: 1024 }, (_, i) => i),
      32768,
      32769,
      ...Array.from({ length: 256 }, (_, i) => 65280 + i),
    ];
    for (const zone of ["full.test.", "empty.test."]) {
      const rcodes = await mapLimit(types, 64, async (type) => {
        const m = await ask(zone, type);
        if (m.rcode === Rcode.Success && m.answer.length === 0) {
          // NODATA names the zone: its SOA in the authority section.
          const soa = m.authority[0];
          assert.equal(soa?.type, Type.SOA, `${zone} type ${type}: SOA`);
          assert.equal((soa.data as SOAData).mname, `ns.dns.${zone}`);
        }
        return m.rcode;
      });
      const nxdomain = types.filter((_, i) => rcodes[i] === Rcode.NameError);
      assert.deepEqual(nxdomain, [], `${zone}: NXDOMAIN for these qtypes`);
      assert.ok(rcodes.every((r) => r === Rcode.Success), `${zone}: all NOERROR`);
    }
    // Empty non-terminals (names with keys only below them) are names too.
    for (const name of ["_tcp.full.test.", "_http._tcp.full.test.", "dns.full.test."]) {
      for (const type of [Type.A, Type.AAAA, Type.CNAME, Type.PTR, Type.NS, Type.SOA, Type.DS]) {
        assert.equal((await ask(name, type)).rcode, Rcode.Success, `${name} type ${type}`);
      }
    }
    assert.equal((await ask("nothing.full.test.", Type.CNAME)).rcode, Rcode.NameError);
  } finally {
    await udp.close();
    client.close();
  }
});
