import assert from "node:assert/strict";
import { Class, Opcode, Rcode, type RR, Type } from "../../dns/types.ts";
import type { Reply, Request } from "../../server/plugin.ts";
import {
  Cache,
  cacheKey,
  type CacheOptions,
  classify,
  defaultOptions,
  LruStore,
  minimalTTL,
} from "./cache.ts";
import { a, fakeRequest, soa } from "../forward/testkit.ts";

function reply(fields: Partial<Reply> = {}): Reply {
  return { rcode: 0, authoritative: true, answer: [], authority: [], additional: [], ...fields };
}

/** A cache on a hand-driven clock and a backend that counts its calls. */
function harness(options: Partial<CacheOptions> = {}, produce: (req: Request) => Reply) {
  let now = 1_700_000_000_000;
  const cache = new Cache({ ...defaultOptions(), ...options }, () => now);
  const backend = {
    calls: 0,
    handler: (req: Request) => {
      backend.calls++;
      return Promise.resolve(produce(req));
    },
  };
  return {
    cache,
    backend,
    advance(seconds: number) {
      now += seconds * 1000;
    },
    ask(req: Request) {
      return cache.serve(req, backend.handler);
    },
  };
}

const ttls = (r: Reply) => [...r.answer, ...r.authority, ...r.additional].map((x) => x.ttl);

Deno.test("cache: classify as CoreDNS's response.Typify", () => {
  const q = { opcode: Opcode.Query, qtype: Type.A, dnssecOk: false };
  const now = 1_700_000_000;
  assert.equal(classify(reply({ answer: [a("x.", "1.2.3.4")] }), q, now), "NoError");
  assert.equal(classify(reply(), q, now), "NoError");
  assert.equal(classify(reply({ authority: [soa(30)] }), q, now), "NoData");
  assert.equal(classify(reply({ rcode: 3, authority: [soa(30)] }), q, now), "NameError");
  assert.equal(classify(reply({ rcode: 3 }), q, now), "OtherError");
  assert.equal(classify(reply({ rcode: 2 }), q, now), "ServerError");
  assert.equal(classify(reply({ rcode: 4 }), q, now), "ServerError");
  assert.equal(classify(reply({ rcode: 5 }), q, now), "OtherError");
  const ns: RR = { name: "sub.x.", type: Type.NS, class: 1, ttl: 60, data: "ns.sub.x." };
  assert.equal(classify(reply({ authority: [ns] }), q, now), "Delegation");
  assert.equal(classify(reply(), { ...q, qtype: Type.AXFR }, now), "Meta");
  assert.equal(classify(reply(), { ...q, opcode: Opcode.Notify }, now), "Meta");
  assert.equal(classify(reply(), { ...q, opcode: Opcode.Update }, now), "Update");
  // An expired RRSIG makes the reply an error for DO clients only.
  const sig = new Uint8Array(20);
  new DataView(sig.buffer).setUint32(8, now - 100); // expiration
  new DataView(sig.buffer).setUint32(12, now - 1000); // inception
  const signed = reply({
    answer: [a("x.", "1.2.3.4"), { name: "x.", type: Type.RRSIG, class: 1, ttl: 60, data: sig }],
  });
  assert.equal(classify(signed, { ...q, dnssecOk: true }, now), "OtherError");
  assert.equal(classify(signed, q, now), "NoError");
});

Deno.test("cache: minimal TTL over all sections (OPT ignored), 5 s fail-safe", () => {
  const r = reply({ answer: [a("x.", "1.1.1.1", 300)], additional: [a("y.", "2.2.2.2", 40)] });
  assert.equal(minimalTTL(r, "NoError"), 40);
  assert.equal(minimalTTL(reply(), "NoError"), 5);
  assert.equal(minimalTTL(reply({ answer: [a("x.", "1.1.1.1", 9000)] }), "NoError"), 3600);
  assert.equal(minimalTTL(reply({ rcode: 2 }), "ServerError"), 5);
});

Deno.test("cache: the first miss already carries the cache TTL; hits count down with AA=1", async () => {
  const h = harness({}, (req) =>
    reply({
      authoritative: false,
      answer: [a(req.question.name, "192.0.2.1", 300), a(req.question.name, "192.0.2.2", 100)],
    }));
  const first = await h.ask(fakeRequest("www.example.org.", Type.A));
  assert.deepEqual(ttls(first), [100, 100]);
  assert.equal(first.authoritative, false, "the miss keeps the backend's flags");
  h.advance(1.5);
  const hit = await h.ask(fakeRequest("WWW.example.ORG.", Type.A));
  assert.deepEqual(ttls(hit), [99, 99]);
  assert.equal(hit.authoritative, true);
  assert.equal(hit.plugin, "cache");
  assert.equal(h.backend.calls, 1);
  h.advance(98);
  assert.deepEqual(ttls(await h.ask(fakeRequest("www.example.org.", Type.A))), [1, 1]);
  h.advance(1);
  await h.ask(fakeRequest("www.example.org.", Type.A));
  assert.equal(h.backend.calls, 2, "expired at TTL 0");
});

Deno.test("cache: TTLs clamp to [min, max] (success 3600, denial 1800, min 5)", async () => {
  const answers: Record<string, Reply> = {
    "low.": reply({ answer: [a("low.", "1.1.1.1", 1)] }),
    "high.": reply({ answer: [a("high.", "1.1.1.1", 86400)] }),
    "nx.": reply({ rcode: 3, authority: [soa(86400)] }),
  };
  const h = harness({}, (req) => answers[req.qname]);
  assert.deepEqual(ttls(await h.ask(fakeRequest("low.", Type.A))), [5]);
  assert.deepEqual(ttls(await h.ask(fakeRequest("high.", Type.A))), [3600]);
  assert.deepEqual(ttls(await h.ask(fakeRequest("nx.", Type.A))), [1800]);
  const capped = harness({ successMaxTTL: 10, denialMaxTTL: 10 }, (req) => answers[req.qname]);
  assert.deepEqual(ttls(await capped.ask(fakeRequest("high.", Type.A))), [10]);
  assert.deepEqual(ttls(await capped.ask(fakeRequest("low.", Type.A))), [5]);
});

Deno.test("cache: denials with SOA are cached (SOA TTL counts); NXDOMAIN without SOA is not", async () => {
  const h = harness(
    {},
    (req) =>
      req.qname.startsWith("soa")
        ? reply({ rcode: Rcode.NameError, authority: [soa(30)] })
        : req.qname.startsWith("nodata")
        ? reply({ authority: [soa(60)] })
        : reply({ rcode: Rcode.NameError }),
  );
  const first = await h.ask(fakeRequest("soa.example.org.", Type.A));
  assert.equal(first.rcode, Rcode.NameError);
  assert.deepEqual(ttls(first), [30]);
  h.advance(3);
  const hit = await h.ask(fakeRequest("soa.example.org.", Type.A));
  assert.deepEqual(ttls(hit), [27]);
  assert.equal(hit.rcode, Rcode.NameError);
  assert.equal(h.backend.calls, 1);
  assert.deepEqual(ttls(await h.ask(fakeRequest("nodata.example.org.", Type.A))), [60]);
  await h.ask(fakeRequest("nodata.example.org.", Type.A));
  assert.equal(h.backend.calls, 2);
  await h.ask(fakeRequest("bare.example.org.", Type.A));
  await h.ask(fakeRequest("bare.example.org.", Type.A));
  assert.equal(h.backend.calls, 4, "NXDOMAIN without SOA is not cached");
});

Deno.test("cache: truncated, REFUSED and bare replies are not cached; SERVFAIL for 5 s", async () => {
  const h = harness({}, (req) => {
    switch (req.qname) {
      case "tc.":
        return reply({ truncated: true, answer: [a("tc.", "1.1.1.1")] });
      case "refused.":
        return reply({ rcode: Rcode.Refused });
      case "bare.":
        return { ...reply({ rcode: Rcode.ServerFailure }), bare: true, error: "boom" };
      default:
        return reply({ rcode: Rcode.ServerFailure });
    }
  });
  for (const name of ["tc.", "refused.", "bare."]) {
    await h.ask(fakeRequest(name, Type.A));
    await h.ask(fakeRequest(name, Type.A));
  }
  assert.equal(h.backend.calls, 6);
  const bare = await h.ask(fakeRequest("bare.", Type.A));
  assert.equal(bare.bare, true);
  assert.equal(bare.error, "boom");
  await h.ask(fakeRequest("servfail.", Type.A));
  h.advance(4);
  await h.ask(fakeRequest("servfail.", Type.A));
  assert.equal(h.backend.calls, 8, "SERVFAIL served from cache within 5 s");
  h.advance(1);
  await h.ask(fakeRequest("servfail.", Type.A));
  assert.equal(h.backend.calls, 9);
  const off = harness({ servfailTTL: 0 }, () => reply({ rcode: Rcode.ServerFailure }));
  await off.ask(fakeRequest("x.", Type.A));
  await off.ask(fakeRequest("x.", Type.A));
  assert.equal(off.backend.calls, 2);
});

Deno.test("cache: key is (qname lower-cased, qtype, qclass, DO, CD)", async () => {
  const h = harness({}, (req) => reply({ answer: [a(req.question.name, "1.1.1.1")] }));
  const variants: Request[] = [
    fakeRequest("key.example.", Type.A),
    fakeRequest("key.example.", Type.AAAA),
    fakeRequest("key.example.", Type.A, { cls: Class.CHAOS }),
    fakeRequest("key.example.", Type.A, { dnssecOk: true }),
    fakeRequest("key.example.", Type.A, { cd: true }),
  ];
  assert.equal(new Set(variants.map(cacheKey)).size, 5);
  for (const req of variants) await h.ask(req);
  assert.equal(h.backend.calls, 5);
  for (const req of variants) await h.ask(req);
  await h.ask(fakeRequest("KEY.Example.", Type.A));
  await h.ask(fakeRequest("key.example.", Type.A, { udpSize: 4096 }));
  assert.equal(h.backend.calls, 5);
});

Deno.test("cache: AD kept only for DO or AD clients; hits too", async () => {
  const h = harness(
    {},
    (req) => reply({ authenticData: true, answer: [a(req.question.name, "1.1.1.1")] }),
  );
  assert.equal((await h.ask(fakeRequest("ad.", Type.A))).authenticData, false);
  assert.equal((await h.ask(fakeRequest("ad.", Type.A))).authenticData, false);
  assert.equal((await h.ask(fakeRequest("ad.", Type.A, { ad: true }))).authenticData, true);
  assert.equal((await h.ask(fakeRequest("ad.", Type.A, { dnssecOk: true }))).authenticData, true);
});

Deno.test("cache: only configured zones are cached; disable success|denial per zone", async () => {
  const h = harness(
    { zones: ["example.org."], successExcept: ["nocache.example.org."], denialExcept: ["."] },
    (req) =>
      req.qname.startsWith("nx")
        ? reply({ rcode: 3, authority: [soa(30)] })
        : reply({ answer: [a(req.question.name, "1.1.1.1", 300)] }),
  );
  for (const name of ["www.example.com.", "x.nocache.example.org.", "nx.example.org."]) {
    const first = await h.ask(fakeRequest(name, Type.A));
    await h.ask(fakeRequest(name, Type.A));
    if (name === "www.example.com.") {
      assert.deepEqual(ttls(first), [300], "outside zones: untouched");
    }
  }
  assert.equal(h.backend.calls, 6);
  await h.ask(fakeRequest("www.example.org.", Type.A));
  await h.ask(fakeRequest("www.example.org.", Type.A));
  assert.equal(h.backend.calls, 7);
});

Deno.test("cache: keepttl serves the stored TTL on every hit", async () => {
  const h = harness(
    { keepTTL: true },
    (req) => reply({ answer: [a(req.question.name, "1.1.1.1", 60)] }),
  );
  await h.ask(fakeRequest("k.", Type.A));
  h.advance(30);
  assert.deepEqual(ttls(await h.ask(fakeRequest("k.", Type.A))), [60]);
  assert.equal(h.backend.calls, 1);
});

Deno.test("cache: serve_stale serves expired entries with TTL 0 and refreshes behind", async () => {
  let address = "192.0.2.1";
  const h = harness(
    { staleUpTo: 3600 },
    (req) => reply({ answer: [a(req.question.name, address, 10)] }),
  );
  await h.ask(fakeRequest("s.", Type.A));
  h.advance(15);
  address = "192.0.2.2";
  const stale = await h.ask(fakeRequest("s.", Type.A));
  assert.deepEqual(ttls(stale), [0]);
  assert.equal(stale.answer[0].data, "192.0.2.1");
  await h.cache.drain();
  assert.equal(h.backend.calls, 2, "refreshed in the background");
  const fresh = await h.ask(fakeRequest("s.", Type.A));
  assert.equal(fresh.answer[0].data, "192.0.2.2");
  assert.deepEqual(ttls(fresh), [10]);
  h.advance(3600 + 20);
  await h.ask(fakeRequest("s.", Type.A));
  assert.equal(h.backend.calls, 3, "beyond serve_stale: a plain miss");
});

Deno.test("cache: serve_stale verify asks the backend first and falls back to stale on failure", async () => {
  let rcode: number = Rcode.Success;
  const h = harness(
    { staleUpTo: 3600, verifyStale: true },
    (req) => reply({ rcode, answer: rcode ? [] : [a(req.question.name, "192.0.2.1", 10)] }),
  );
  await h.ask(fakeRequest("v.", Type.A));
  h.advance(20);
  rcode = Rcode.ServerFailure;
  const stale = await h.ask(fakeRequest("v.", Type.A));
  assert.equal(stale.rcode, Rcode.Success);
  assert.deepEqual(ttls(stale), [0]);
  rcode = Rcode.Success;
  const fresh = await h.ask(fakeRequest("v.", Type.A));
  assert.deepEqual(ttls(fresh), [10]);
  assert.equal(h.backend.calls, 3);
});

Deno.test("cache: prefetch refreshes popular entries close to expiry", async () => {
  const h = harness(
    { prefetch: 2, prefetchWindow: 60, prefetchPercentage: 50 },
    (req) => reply({ answer: [a(req.question.name, "192.0.2.1", 20)] }),
  );
  await h.ask(fakeRequest("p.", Type.A));
  await h.ask(fakeRequest("p.", Type.A)); // hit 1, TTL 20: not yet
  h.advance(5);
  await h.ask(fakeRequest("p.", Type.A)); // hit 2, TTL 15 > 10
  await h.cache.drain();
  assert.equal(h.backend.calls, 1);
  h.advance(6);
  const hit = await h.ask(fakeRequest("p.", Type.A)); // hit 3, TTL 9 <= 10: prefetch
  assert.deepEqual(ttls(hit), [9]);
  await h.cache.drain();
  assert.equal(h.backend.calls, 2);
  assert.deepEqual(ttls(await h.ask(fakeRequest("p.", Type.A))), [20]);
});

Deno.test("cache: LRU store evicts the least recently used entry at capacity", () => {
  const store = new LruStore<number>(2);
  store.set("a", 1);
  store.set("b", 2);
  store.get("a");
  assert.equal(store.set("c", 3), true);
  assert.equal(store.peek("b"), undefined);
  assert.equal(store.peek("a"), 1);
  assert.equal(store.set("a", 4), false, "replacing is not evicting");
  assert.equal(store.size, 2);
});

Deno.test("cache store: bounded by estimated bytes as well as entries, least recently used first", () => {
  const store = new LruStore<number>(100, 100, (v) => v);
  store.set("a", 30); // 32 bytes with its key
  store.set("b", 30);
  store.set("c", 30);
  assert.equal(store.bytes, 96);
  store.get("a");
  assert.equal(store.set("d", 30), true, "b, the least recently used, made room");
  assert.equal(store.peek("b"), undefined);
  assert.equal(store.peek("a"), 30);
  assert.ok(store.bytes <= 100);
  assert.equal(store.set("huge", 500), false);
  assert.equal(store.peek("huge"), undefined, "larger than the whole cap: not kept");
  store.delete("a");
  assert.equal(store.bytes, 64);
});

Deno.test("cache: the byte cap holds whole replies out, the entry cap still counts", async () => {
  const big = Array.from({ length: 50 }, (_, i) => a("big.example.", `10.0.0.${i}`, 300));
  const h = harness({ maxBytes: 4096 }, () => reply({ answer: big }));
  await h.ask(fakeRequest("one.example.", Type.A));
  await h.ask(fakeRequest("two.example.", Type.A));
  assert.ok(h.cache.success.bytes <= 4096, `${h.cache.success.bytes} bytes`);
  assert.equal(h.cache.success.size, 1, "each reply is most of the cap: one fits at a time");
});
