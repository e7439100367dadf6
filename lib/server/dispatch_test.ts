import assert from "node:assert/strict";
import { Dispatcher, type Peer } from "./dispatch.ts";
import type { BlockRuntime, ListenerConfig } from "./config.ts";
import type { Plugin, Reply } from "./plugin.ts";
import { decodeMessage, encodeQuery } from "../dns/wire.ts";
import { Class, Rcode, type RR, Type } from "../dns/types.ts";
import { createLogger } from "../log.ts";
import { whoamiReply } from "../plugins/whoami/mod.ts";

const quiet = createLogger("test", () => {});
const udpPeer: Peer = {
  transport: "udp",
  remoteAddress: "127.0.0.1",
  remotePort: 5353,
  localAddress: "127.0.0.1",
  localPort: 53,
};

function block(zones: string[], plugins: Plugin[]): BlockRuntime {
  const chain = plugins.length
    ? (req: Parameters<Plugin["serve"]>[0]) => plugins[0].serve(req, () => Promise.reject())
    : null;
  return { zones, keys: [], port: 53, bind: [], chain, plugins, anyClass: false };
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
    const key = d.keyOf(q, "udp");
    assert.ok(key);
    const bytes = d.cached(key, q) ?? await d.handle(q, udpPeer, key);
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
      (req as { observers?: unknown[] }).observers?.push(() => {});
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
    const key = d.keyOf(q, "udp")!;
    assert.equal(d.cached(key, q), undefined);
    await d.handle(q, udpPeer, key);
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
