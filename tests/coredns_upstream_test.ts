/**
 * `forward` and `cache` with the real CoreDNS (`COREDNS_BIN`) as the
 * upstream resolver, serving a zone with its `file` plugin: what idetcd
 * passes on must be what CoreDNS answered, truncation must send the client
 * to TCP and TCP must carry the whole answer, and the cache must keep
 * answering, counting TTLs down, after the upstream is gone.
 */

import assert from "node:assert/strict";
import { Rcode, type RR, type SOAData, Type, typeToString } from "../lib/dns/types.ts";
import { decodeMessage, encodeQuery, type Message } from "../lib/dns/wire.ts";
import { type CoreDNSProcess, corednsTest, startCoreDNS } from "./helpers/coredns.ts";
import { exchangeTcp, UdpClient } from "./helpers/exchange.ts";
import { startServer, writeCorefile } from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";

const ZONE_FILE = [
  "$ORIGIN example.org.",
  "@      3600 IN SOA ns1.example.org. admin.example.org. 2024010101 7200 3600 1209600 60",
  "@      3600 IN NS  ns1",
  "ns1    3600 IN A   192.0.2.53",
  "www     300 IN A   192.0.2.1",
  "www     300 IN AAAA 2001:db8::1",
  "alias   300 IN CNAME www",
  'txt     300 IN TXT "hello" "world"',
  "mx      300 IN MX  10 mail.example.org.",
  "mail    300 IN A   192.0.2.25",
  // 100 addresses: 1,642 bytes, more than any UDP answer may carry here.
  ...Array.from({ length: 100 }, (_, i) => `many 300 IN A 198.51.100.${i}`),
  "",
].join("\n");

/** The upstream: CoreDNS's `file` plugin for example.org. */
async function upstream(bin: string): Promise<CoreDNSProcess> {
  const port = await freePort();
  return await startCoreDNS(
    bin,
    `example.org:${port} {\n    file db.example.org\n}\n`,
    port,
    { "db.example.org": ZONE_FILE },
  );
}

/** The records of a reply as text, OPT apart (idetcd adds its own). */
function records(m: Message): string[] {
  const show = (r: RR) => {
    const d = r.type === Type.SOA
      ? Object.values(r.data as SOAData).join(" ")
      : typeof r.data === "object"
      ? JSON.stringify(r.data)
      : String(r.data);
    return `${r.name} ${r.ttl} ${typeToString(r.type)} ${d}`;
  };
  return [
    ...m.answer.map((r) => `an ${show(r)}`),
    ...m.authority.map((r) => `ns ${show(r)}`),
    ...m.additional.filter((r) => r.type !== Type.OPT).map((r) => `ar ${show(r)}`),
  ];
}

function header(m: Message): string {
  return `rcode=${m.rcode} aa=${m.authoritative} tc=${m.truncated} ra=${m.recursionAvailable}`;
}

const QUESTIONS: [string, number][] = [
  ["www.example.org.", Type.A],
  ["WWW.Example.ORG.", Type.AAAA],
  ["alias.example.org.", Type.A],
  ["txt.example.org.", Type.TXT],
  ["mx.example.org.", Type.MX],
  ["example.org.", Type.SOA],
  ["example.org.", Type.NS],
  ["www.example.org.", Type.MX], // NODATA
  ["missing.example.org.", Type.A], // NXDOMAIN
];

corednsTest("forward: CoreDNS's answers are passed on unchanged, over UDP and TCP", async (bin) => {
  await using core = await upstream(bin);
  const port = await freePort();
  const conf = await writeCorefile(`.:${port} {\n    forward . 127.0.0.1:${core.port}\n}\n`);
  await using _server = await startServer(conf);
  const direct = new UdpClient("127.0.0.1", core.port);
  const via = new UdpClient("127.0.0.1", port);
  try {
    for (const [name, type] of QUESTIONS) {
      for (const udpSize of [0, 1232]) {
        const q = encodeQuery(1, name, type, udpSize ? { udpSize } : {});
        const want = decodeMessage((await direct.exchange(q))!);
        const got = decodeMessage((await via.exchange(q))!);
        const label = `${name} ${typeToString(type)} edns=${udpSize}`;
        assert.equal(header(got), header(want), label);
        assert.deepEqual(records(got), records(want), label);
        assert.equal(got.question[0].name, name, `${label}: question case`);
        const tcpWant = decodeMessage((await exchangeTcp("127.0.0.1", core.port, q))!);
        const tcpGot = decodeMessage((await exchangeTcp("127.0.0.1", port, q))!);
        assert.deepEqual(records(tcpGot), records(tcpWant), `${label} over TCP`);
      }
    }
    // An answer too large for UDP: TC from CoreDNS, passed on; over TCP all 100 addresses.
    for (const udpSize of [0, 1232, 4096]) {
      const q = encodeQuery(2, "many.example.org.", Type.A, udpSize ? { udpSize } : {});
      const got = decodeMessage((await via.exchange(q))!);
      assert.equal(got.truncated, true, `UDP with EDNS ${udpSize}: TC`);
      assert.equal(got.rcode, Rcode.Success);
      const whole = decodeMessage((await exchangeTcp("127.0.0.1", port, q))!);
      assert.equal(whole.truncated, false);
      assert.equal(whole.answer.length, 100);
      assert.deepEqual(
        records(whole),
        records(decodeMessage((await exchangeTcp("127.0.0.1", core.port, q))!)),
      );
    }
  } finally {
    await direct.close();
    await via.close();
  }
});

corednsTest(
  "cache: answers CoreDNS gave keep coming after it stops, TTLs counting down",
  async (bin) => {
    const core = await upstream(bin);
    let coreStopped = false;
    const port = await freePort();
    const conf = await writeCorefile(
      `.:${port} {\n    cache 600\n    forward . 127.0.0.1:${core.port} {\n        max_fails 0\n    }\n}\n`,
    );
    await using _server = await startServer(conf);
    const via = new UdpClient("127.0.0.1", port);
    try {
      const ask = async (name: string, type: number, timeoutMs = 3000) => {
        const reply = await via.exchange(encodeQuery(3, name, type, { udpSize: 1232 }), {
          timeoutMs,
          tries: 1,
        });
        assert.ok(reply, `${name} ${typeToString(type)}: no reply`);
        return decodeMessage(reply);
      };
      // Misses: the upstream's records, every TTL set to the reply's lowest.
      const www = await ask("www.example.org.", Type.A);
      assert.deepEqual(www.answer.map((r) => [r.data, r.ttl]), [["192.0.2.1", 300]]);
      const alias = await ask("alias.example.org.", Type.A);
      assert.deepEqual(alias.answer.map((r) => r.type), [Type.CNAME, Type.A]);
      const nx = await ask("missing.example.org.", Type.A);
      assert.equal(nx.rcode, Rcode.NameError);
      // The denial's TTL is its SOA's, capped by `cache 600`.
      const direct = new UdpClient("127.0.0.1", core.port);
      const upstreamSoa = decodeMessage(
        (await direct.exchange(encodeQuery(4, "missing.example.org.", Type.A)))!,
      ).authority[0];
      await direct.close();
      const nxTtl = nx.authority[0].ttl;
      assert.equal(nxTtl, Math.min(600, upstreamSoa.ttl));

      await core[Symbol.asyncDispose]();
      coreStopped = true;
      // With the upstream gone, cached names still answer, from the cache (AA set).
      const again = await waitFor(async () => {
        const m = await ask("www.example.org.", Type.A);
        return m.answer[0]?.ttl < 300 ? m : undefined;
      }, { timeoutMs: 5000, what: "the cached TTL to count down" });
      assert.equal(again.authoritative, true);
      assert.equal(again.answer[0].data, "192.0.2.1");
      assert.deepEqual(
        (await ask("alias.example.org.", Type.A)).answer.map((r) => r.data),
        alias.answer.map((r) => r.data),
      );
      const nxAgain = await ask("MISSING.example.org.", Type.A);
      assert.equal(nxAgain.rcode, Rcode.NameError, "the key is lower-cased");
      assert.ok(nxAgain.authority[0].ttl <= nxTtl);
      // A name never asked has nothing cached and no upstream: SERVFAIL (within
      // forward's 5 s budget).
      assert.equal((await ask("ns1.example.org.", Type.A, 8000)).rcode, Rcode.ServerFailure);
    } finally {
      await via.close();
      if (!coreStopped) await core[Symbol.asyncDispose]();
    }
  },
);
