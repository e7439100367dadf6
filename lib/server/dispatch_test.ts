import assert from "node:assert/strict";
import { Dispatcher, type Peer } from "./dispatch.ts";
import type { BlockRuntime, ListenerConfig } from "./config.ts";
import type { Plugin, Reply } from "./plugin.ts";
import { decodeMessage, encodeMessage, encodeQuery, type Message } from "../dns/wire.ts";
import {
  Class,
  EdnsOption,
  Opcode,
  type OPTData,
  Rcode,
  type RR,
  TsigError,
  Type,
} from "../dns/types.ts";
import { createLogger } from "../log.ts";
import { whoamiReply } from "../plugins/whoami/mod.ts";

const quiet = createLogger("test", () => {});
const client = { address: "127.0.0.1", port: 5353 };
const local = { address: "127.0.0.1", port: 53 };
const udpPeer: Peer = {
  transport: "udp",
  remoteAddress: "127.0.0.1",
  remotePort: 5353,
  localAddress: "127.0.0.1",
  localPort: 53,
};

function block(zones: string[], plugins: Plugin[]): BlockRuntime {
  type Req = Parameters<Plugin["serve"]>[0];
  const link = (i: number) => (req: Req): Promise<Reply> =>
    i < plugins.length ? plugins[i].serve(req, link(i + 1)) : Promise.reject();
  const chain = plugins.length ? link(0) : null;
  return { zones, keys: [], port: 53, bind: [], chain, plugins, anyClass: false, fast: true };
}

const whoami: Plugin = { name: "whoami", serve: (req) => Promise.resolve(whoamiReply(req)) };

function answering(name: string, records: (qname: string) => RR[]): Plugin {
  return {
    name,
    serve: (req) =>
      Promise.resolve<Reply>({
        rcode: 0,
        authoritative: true,
        answer: records(req.question.name),
        authority: [],
        additional: [],
        plugin: name,
      }),
  };
}

function dispatcher(entries: [string, BlockRuntime][]): Dispatcher {
  const listener: ListenerConfig = { host: "", port: 53, zones: new Map(entries) };
  return new Dispatcher(listener, quiet);
}

async function ask(d: Dispatcher, packet: Uint8Array, peer = udpPeer) {
  const out = await d.handle(packet, peer);
  assert.ok(out, "expected a reply");
  return decodeMessage(out);
}

Deno.test("dispatch: whoami answers as CoreDNS (additional A + _udp SRV, TTL 0, case kept)", async () => {
  const d = dispatcher([[".", block(["."], [whoami])]]);
  const m = await ask(d, encodeQuery(1, "Example.ORG.", Type.A));
  assert.equal(m.rcode, Rcode.Success);
  assert.equal(m.authoritative, true);
  assert.equal(m.answer.length, 0);
  assert.deepEqual(m.additional, [
    { name: "Example.ORG.", type: Type.A, class: 1, ttl: 0, data: "127.0.0.1" },
    {
      name: "_udp.Example.ORG.",
      type: Type.SRV,
      class: 1,
      ttl: 0,
      data: { priority: 0, weight: 0, port: 5353, target: "." },
    },
  ]);
});

Deno.test("dispatch: longest zone suffix wins, then '.', else REFUSED", async () => {
  const a = answering("a", (n) => [{ name: n, type: Type.A, class: 1, ttl: 1, data: "1.1.1.1" }]);
  const b = answering("b", (n) => [{ name: n, type: Type.A, class: 1, ttl: 1, data: "2.2.2.2" }]);
  const d = dispatcher([
    ["example.org.", block(["example.org."], [a])],
    ["sub.example.org.", block(["sub.example.org."], [b])],
  ]);
  assert.equal(
    (await ask(d, encodeQuery(1, "x.sub.example.org.", Type.A))).answer[0].data,
    "2.2.2.2",
  );
  assert.equal((await ask(d, encodeQuery(1, "x.example.org.", Type.A))).answer[0].data, "1.1.1.1");
  assert.equal((await ask(d, encodeQuery(1, "example.com.", Type.A))).rcode, Rcode.Refused);
  const withRoot = dispatcher([
    ["example.org.", block(["example.org."], [a])],
    [".", block(["."], [b])],
  ]);
  assert.equal(
    (await ask(withRoot, encodeQuery(1, "example.com.", Type.A))).answer[0].data,
    "2.2.2.2",
  );
});

Deno.test("dispatch: a block without plugins and a non-IN class are REFUSED", async () => {
  const d = dispatcher([
    ["example.org.", block(["example.org."], [])],
    [".", block(["."], [whoami])],
  ]);
  assert.equal((await ask(d, encodeQuery(1, "a.example.org.", Type.A))).rcode, Rcode.Refused);
  const chaos = encodeQuery(1, "version.bind.", Type.TXT, { cls: Class.CHAOS });
  assert.equal((await ask(d, chaos)).rcode, Rcode.Refused);
});

Deno.test("dispatch: NOTIMP for other opcodes, FORMERR for junk, BADVERS for EDNS1, nothing for runts", async () => {
  const d = dispatcher([[".", block(["."], [whoami])]]);
  const q = encodeQuery(9, "a.", Type.A);
  const update = q.slice();
  update[2] = (update[2] & 0x87) | (5 << 3);
  assert.equal((await ask(d, update)).rcode, Rcode.NotImplemented);
  const junk = q.slice(0, 14);
  const fm = await ask(d, junk);
  assert.equal(fm.rcode, Rcode.FormatError);
  assert.equal(fm.id, 9);
  assert.equal(await d.handle(new Uint8Array(3), udpPeer), null);
  const edns = encodeQuery(9, "a.", Type.A, { udpSize: 1232 });
  edns[edns.length - 5] = 1; // the OPT TTL byte that holds the EDNS version
  const bv = await ask(d, edns);
  assert.equal(bv.rcode, Rcode.BadVers);
});

Deno.test("dispatch: large answers are truncated with TC over UDP, whole over TCP, OPT echoed", async () => {
  const many = answering("many", (n) =>
    Array.from({ length: 60 }, (_, i) => ({
      name: n,
      type: Type.A,
      class: 1,
      ttl: 30,
      data: `10.0.${i}.1`,
    })));
  const d = dispatcher([[".", block(["."], [many])]]);
  const small = await ask(d, encodeQuery(1, "big.example.", Type.A));
  assert.equal(small.truncated, true);
  const edns = await ask(d, encodeQuery(1, "big.example.", Type.A, { udpSize: 4096 }));
  assert.equal(edns.truncated, false);
  assert.equal(edns.answer.length, 60);
  assert.equal(edns.additional.at(-1)?.type, Type.OPT);
  const tcp = await ask(d, encodeQuery(1, "big.example.", Type.A), {
    ...udpPeer,
    transport: "tcp",
  });
  assert.equal(tcp.truncated, false);
  assert.equal(tcp.answer.length, 60);
});

Deno.test("dispatch: a throwing plugin yields SERVFAIL, not a crash", async () => {
  const broken: Plugin = { name: "broken", serve: () => Promise.reject(new Error("boom")) };
  const d = dispatcher([[".", block(["."], [broken])]]);
  assert.equal((await ask(d, encodeQuery(1, "a.", Type.A))).rcode, Rcode.ServerFailure);
});

Deno.test("dispatch: a record that cannot be encoded yields SERVFAIL", async () => {
  const bad = answering(
    "bad",
    (n) => [{ name: n, type: Type.A, class: 1, ttl: 1, data: "not-an-ip" }],
  );
  const d = dispatcher([[".", block(["."], [bad])]]);
  assert.equal((await ask(d, encodeQuery(1, "a.", Type.A))).rcode, Rcode.ServerFailure);
});

Deno.test("dispatch: replies marked with a generation are served from the encoded cache until it moves", async () => {
  let calls = 0;
  let generation = 1;
  const counted: Plugin = {
    name: "counted",
    serve: (req) => {
      calls++;
      return Promise.resolve<Reply>({
        rcode: 0,
        authoritative: true,
        answer: [{ name: req.question.name, type: Type.A, class: 1, ttl: 30, data: "10.1.2.3" }],
        authority: [],
        additional: [],
        cacheGeneration: () => generation,
      });
    },
  };
  const d = dispatcher([[".", block(["."], [counted])]]);
  const ask2 = async (id: number, name: string, rd = true) => {
    const q = encodeQuery(id, name, Type.A, { rd });
    const bytes = await d.answer(q, "udp", client, local);
    assert.ok(bytes);
    return decodeMessage(bytes);
  };
  const first = await ask2(100, "Fast.Example.");
  assert.equal(calls, 1);
  const second = await ask2(200, "Fast.Example.", false);
  assert.equal(calls, 1, "second identical question is answered without the chain");
  assert.equal(second.id, 200);
  assert.equal(second.recursionDesired, false);
  assert.deepEqual(second.answer, first.answer);
  assert.equal(second.answer[0].name, "Fast.Example.");
  await ask2(300, "fast.example.");
  assert.equal(calls, 2, "another spelling of the name is another entry (owner case differs)");
  generation = 2;
  await ask2(400, "Fast.Example.");
  assert.equal(calls, 3, "a new generation invalidates the entry");
});

Deno.test("dispatch: replies with per-query observers are never kept", async () => {
  let calls = 0;
  const observed: Plugin = {
    name: "observed",
    serve: (req) => {
      calls++;
      req.observe(() => {});
      return Promise.resolve<Reply>({
        rcode: 0,
        authoritative: true,
        answer: [],
        authority: [],
        additional: [],
        cacheGeneration: () => 1,
      });
    },
  };
  const d = dispatcher([[".", block(["."], [observed])]]);
  for (let i = 0; i < 3; i++) {
    const q = encodeQuery(i, "a.example.", Type.A);
    const answer = d.answer(q, "udp", client, local);
    assert.ok(answer instanceof Promise, "never a kept reply");
    await answer;
  }
  assert.equal(calls, 3);
});

Deno.test("dispatch: other classes pass when any block on the listener has a forward (per server, as CoreDNS)", async () => {
  const withForward = { ...block(["example.org."], [whoami]), anyClass: true };
  const d = dispatcher([["example.org.", withForward], [".", block(["."], [whoami])]]);
  const chaos = encodeQuery(1, "foo.", Type.TXT, { cls: Class.CHAOS });
  assert.equal((await ask(d, chaos)).rcode, Rcode.Success);
  // Without any forward the class is refused before the EDNS version is looked at.
  const plain = dispatcher([[".", block(["."], [whoami])]]);
  const q = encodeQuery(2, "foo.", Type.TXT, { cls: Class.CHAOS, udpSize: 1232 });
  q[q.length - 5] = 1; // EDNS version 1
  assert.equal((await ask(plain, q)).rcode, Rcode.Refused);
});

Deno.test("dispatch: DS goes to the parent zone; an escaped dot is not a label boundary", async () => {
  const parent = answering(
    "parent",
    (n) => [{ name: n, type: Type.A, class: 1, ttl: 1, data: "1.1.1.1" }],
  );
  const child = answering(
    "child",
    (n) => [{ name: n, type: Type.A, class: 1, ttl: 1, data: "2.2.2.2" }],
  );
  const d = dispatcher([
    ["example.org.", block(["example.org."], [parent])],
    ["sub.example.org.", block(["sub.example.org."], [child])],
    [".", block(["."], [whoami])],
  ]);
  assert.equal(d.route("sub.example.org.", Type.DS)?.[0], "example.org.");
  assert.equal(d.route("sub.example.org.", Type.A)?.[0], "sub.example.org.");
  // "a\.sub" is one label: the name is a child of example.org., not of sub.example.org.
  assert.equal(d.route("a\\.sub.example.org.")?.[0], "example.org.");
  // Two labels, "x.example" and "org": only the root block holds it.
  assert.equal(d.route("x\\.example.org.")?.[0], ".");
  const m = await ask(d, encodeQuery(1, "x\\.example.org.", Type.A));
  assert.equal(m.additional[0].data, "127.0.0.1");
});

/** `count` A records of `name` (16 bytes each after the first, with compression). */
function addresses(count: number): Plugin {
  return answering("many", (n) =>
    Array.from({ length: count }, (_, i) => ({
      name: n,
      type: Type.A,
      class: 1,
      ttl: 30,
      data: `10.0.${i >> 8}.${i & 255}`,
    })));
}

Deno.test("dispatch: UDP answers stop at 1,232 bytes by default, whatever the client offers", async () => {
  // 100 addresses: 1,642 bytes, as in the report.
  const d = dispatcher([[".", block(["."], [addresses(100)])]]);
  const big = await d.handle(encodeQuery(1, "big.example.", Type.A, { udpSize: 4096 }), udpPeer);
  assert.ok(big && big.length <= 1232, `${big?.length} bytes`);
  const m = decodeMessage(big);
  assert.equal(m.truncated, true);
  // The reply says what the server used, as CoreDNS with bufsize does.
  assert.equal((m.additional.at(-1)?.data as OPTData).udpSize, 1232);
  // Smaller offers are kept; TCP is never capped.
  const small = decodeMessage(
    (await d.handle(
      encodeQuery(1, "big.example.", Type.A, { udpSize: 800 }),
      udpPeer,
    ))!,
  );
  assert.equal((small.additional.at(-1)?.data as OPTData).udpSize, 800);
  const tcp = await ask(d, encodeQuery(1, "big.example.", Type.A, { udpSize: 4096 }), {
    ...udpPeer,
    transport: "tcp",
  });
  assert.equal(tcp.answer.length, 100);
  assert.equal(tcp.truncated, false);
});

Deno.test("dispatch: a block's udpSize (bufsize) is its cap", async () => {
  const wide = dispatcher([[".", { ...block(["."], [addresses(100)]), udpSize: 4096 }]]);
  const m = await ask(wide, encodeQuery(1, "big.example.", Type.A, { udpSize: 4096 }));
  assert.equal(m.truncated, false);
  assert.equal(m.answer.length, 100);
  const narrow = dispatcher([[".", { ...block(["."], [addresses(100)]), udpSize: 600 }]]);
  const bytes = await narrow.handle(
    encodeQuery(1, "big.example.", Type.A, { udpSize: 4096 }),
    udpPeer,
  );
  assert.ok(bytes && bytes.length <= 600);
  assert.equal((decodeMessage(bytes).additional.at(-1)?.data as OPTData).udpSize, 600);
});

Deno.test("dispatch: NOTIMP clears CD (as Knot) and keeps RD; NOTIFY replies copy neither", async () => {
  const d = dispatcher([[".", block(["."], [whoami])]]);
  const q = encodeQuery(9, "a.", Type.A);
  const update = q.slice();
  update[2] = (update[2] & 0x87) | (Opcode.Update << 3);
  update[3] |= 0x10; // CD
  const m = await ask(d, update);
  assert.equal(m.rcode, Rcode.NotImplemented);
  assert.equal(m.checkingDisabled, false);
  assert.equal(m.recursionDesired, true);
  // miekg/dns's SetReply copies RD and CD for QUERY only.
  const notify = q.slice();
  notify[2] = (notify[2] & 0x87) | (Opcode.Notify << 3);
  notify[3] |= 0x10;
  const n = await ask(d, notify);
  assert.equal(n.opcode, Opcode.Notify);
  assert.equal(n.recursionDesired, false);
  assert.equal(n.checkingDisabled, false);
  const cd = encodeQuery(9, "a.", Type.A);
  cd[3] |= 0x10;
  assert.equal((await ask(d, cd)).checkingDisabled, true);
});

Deno.test("dispatch: BADVERS replies carry CoreDNS's fresh OPT (size 0, no DO) and the question", async () => {
  const d = dispatcher([[".", block(["."], [whoami])]]);
  const q = encodeQuery(9, "a.", Type.A, { udpSize: 4096, dnssecOk: true });
  q[q.length - 5] = 1; // EDNS version 1
  const m = await ask(d, q);
  assert.equal(m.rcode, Rcode.BadVers);
  assert.equal(m.question[0].name, "a.");
  const opt = m.additional.at(-1)?.data as OPTData;
  assert.deepEqual([opt.udpSize, opt.version, opt.dnssecOk, opt.options], [0, 0, false, []]);
});

/** A query carrying a TSIG record for key `k.` (algorithm hmac-sha256, fudge 300, a fake MAC). */
function signedQuery(withEdns: boolean): Uint8Array {
  const alg = [11, ..."hmac-sha256".split("").map((c) => c.charCodeAt(0)), 0];
  const rdata = Uint8Array.from([
    ...alg,
    0,
    0,
    0x65,
    0,
    0,
    1,
    1,
    44,
    0,
    4,
    9,
    9,
    9,
    9,
    0,
    7,
    0,
    0,
    0,
    0,
  ]);
  const opt: RR = {
    name: ".",
    type: Type.OPT,
    class: 1232,
    ttl: 0,
    data: { udpSize: 1232, extendedRcode: 0, version: 0, dnssecOk: false, options: [] },
  };
  const msg: Message = {
    ...decodeMessage(encodeQuery(7, "a.", Type.A)),
    additional: [
      ...(withEdns ? [opt] : []),
      { name: "k.", type: Type.TSIG, class: Class.ANY, ttl: 0, data: rdata },
    ],
  };
  return encodeMessage(msg);
}

Deno.test("dispatch: a TSIG-signed query gets NOTAUTH with an unsigned BADKEY TSIG (RFC 8945)", async () => {
  const d = dispatcher([[".", block(["."], [whoami])]]);
  for (const withEdns of [false, true]) {
    const m = await ask(d, signedQuery(withEdns));
    assert.equal(m.rcode, Rcode.NotAuth);
    assert.equal(m.answer.length, 0);
    const tsig = m.additional.at(-1)!;
    assert.equal(tsig.type, Type.TSIG, "TSIG is the last record, after OPT");
    assert.equal(tsig.name, "k.");
    assert.equal(tsig.class, Class.ANY);
    const r = tsig.data as Uint8Array;
    const n = 13; // the algorithm name's wire length
    assert.deepEqual([...r.subarray(0, n)], [11, ...new TextEncoder().encode("hmac-sha256"), 0]);
    assert.deepEqual([...r.subarray(n, n + 8)], [0, 0, 0x65, 0, 0, 1, 1, 44], "time and fudge");
    assert.deepEqual([...r.subarray(n + 8)], [0, 0, 0, 7, 0, TsigError.BadKey, 0, 0]);
    assert.equal(m.additional.some((x) => x.type === Type.OPT), withEdns);
  }
  // A TSIG that is not the last record is a FORMERR (two TSIGs: the first is not last).
  const bad = decodeMessage(signedQuery(false));
  bad.additional.push({ ...bad.additional[0] });
  assert.equal((await ask(d, encodeMessage(bad))).rcode, Rcode.FormatError);
});

Deno.test("dispatch: over TCP a reply larger than 65,535 bytes is SERVFAIL with an extended error", async () => {
  const huge = answering("huge", (n) => [{
    name: n,
    type: Type.TXT,
    class: 1,
    ttl: 30,
    data: Array.from({ length: 280 }, () => "t".repeat(255)),
  }]);
  const d = dispatcher([[".", block(["."], [huge])]]);
  const tcpPeer: Peer = { ...udpPeer, transport: "tcp" };
  const m = await ask(d, encodeQuery(1, "big.", Type.TXT, { udpSize: 1232 }), tcpPeer);
  assert.equal(m.rcode, Rcode.ServerFailure);
  assert.equal(m.truncated, false);
  const ede = (m.additional.at(-1)?.data as OPTData).options;
  assert.equal(ede.length, 1);
  assert.equal(ede[0].code, EdnsOption.ExtendedError);
  assert.deepEqual([...ede[0].data.subarray(0, 2)], [0, 0]);
  assert.match(new TextDecoder().decode(ede[0].data.subarray(2)), /65535/);
  // Without EDNS: a plain SERVFAIL. Over UDP: TC, so the client comes over TCP.
  assert.equal((await ask(d, encodeQuery(1, "big.", Type.TXT), tcpPeer)).rcode, 2);
  const udp = await ask(d, encodeQuery(1, "big.", Type.TXT, { udpSize: 1232 }));
  assert.equal(udp.rcode, Rcode.Success);
  assert.equal(udp.truncated, true);
});
