import assert from "node:assert/strict";
import { AnswerCache, answerKey, fastKey, MAX_AGE_MS, ttlOffsets } from "./answer_cache.ts";
import { decodeMessage, encodeMessage, encodeQuery, type Message } from "../dns/wire.ts";
import { Type } from "../dns/types.ts";
import type { FastHit } from "./plugin.ts";

/** A reply with two A records (compressed owners) and an OPT record. */
function replyBytes(ttl = 300): Uint8Array {
  const message: Message = {
    id: 0,
    response: true,
    opcode: 0,
    authoritative: true,
    truncated: false,
    recursionDesired: true,
    recursionAvailable: false,
    zero: false,
    authenticData: false,
    checkingDisabled: false,
    rcode: 0,
    question: [{ name: "a.example.", type: Type.A, class: 1 }],
    answer: [
      { name: "a.example.", type: Type.A, class: 1, ttl, data: "10.0.0.1" },
      { name: "a.example.", type: Type.A, class: 1, ttl, data: "10.0.0.2" },
    ],
    authority: [],
    additional: [{
      name: ".",
      type: Type.OPT,
      class: 1232,
      ttl: 0x8000,
      data: { udpSize: 1232, extendedRcode: 0, version: 0, dnssecOk: true, options: [] },
    }],
  };
  return encodeMessage(message);
}

Deno.test("answerKey: question bytes, EDNS size/DO and transport make the key", () => {
  const plain = answerKey(encodeQuery(1, "a.example.", Type.A), "udp");
  assert.ok(plain);
  assert.equal(answerKey(encodeQuery(2, "a.example.", Type.A, { rd: false }), "udp"), plain);
  assert.notEqual(answerKey(encodeQuery(1, "a.example.", Type.A), "tcp"), plain);
  assert.notEqual(answerKey(encodeQuery(1, "A.example.", Type.A), "udp"), plain);
  assert.notEqual(answerKey(encodeQuery(1, "a.example.", Type.AAAA), "udp"), plain);
  const edns = answerKey(encodeQuery(1, "a.example.", Type.A, { udpSize: 1232 }), "udp");
  const ednsDo = answerKey(
    encodeQuery(1, "a.example.", Type.A, { udpSize: 1232, dnssecOk: true }),
    "udp",
  );
  assert.ok(edns && ednsDo && edns !== plain && edns !== ednsDo);
});

Deno.test("answerKey: unusual packets take the full path", () => {
  const q = encodeQuery(1, "a.example.", Type.A);
  const response = q.slice();
  response[2] |= 0x80;
  assert.equal(answerKey(response, "udp"), undefined);
  const trailing = new Uint8Array(q.length + 3);
  trailing.set(q);
  assert.equal(answerKey(trailing, "udp"), undefined);
  assert.equal(answerKey(q.slice(0, q.length - 1), "udp"), undefined);
  const pointer = q.slice();
  pointer[12] = 0xc0;
  assert.equal(answerKey(pointer, "udp"), undefined);
});

Deno.test("AnswerCache: entries expire after MAX_AGE_MS and on a new generation", () => {
  let now = 0;
  let generation = 7;
  const cache = new AnswerCache(() => now);
  const q = encodeQuery(0x1234, "a.example.", Type.A);
  cache.store("k", new Uint8Array([0, 0, 0x85, 0x00, 9, 9]), {
    generation: () => generation,
    observers: [],
  });
  const hit = cache.reply("k", q);
  assert.deepEqual(hit?.subarray(0, 2), Uint8Array.from([0x12, 0x34]));
  now = MAX_AGE_MS + 1;
  assert.equal(cache.reply("k", q), undefined);
  now = 0;
  cache.store("k", new Uint8Array([0, 0, 0x85, 0, 9, 9]), {
    generation: () => generation,
    observers: [],
  });
  generation = 8;
  assert.equal(cache.reply("k", q), undefined);
  assert.equal(cache.size, 0);
});

Deno.test("answerKey: a query with EDNS options takes the full path", () => {
  const q = encodeQuery(1, "a.example.", Type.A, { udpSize: 1232 });
  // Append a 3-byte malformed option and fix the OPT rdlength.
  const withOption = new Uint8Array(q.length + 3);
  withOption.set(q);
  withOption.set([0, 10, 0], q.length);
  withOption[q.length - 1] = 3;
  assert.equal(answerKey(withOption, "udp"), undefined);
});

Deno.test("answerKey: the query's AD and CD bits are part of the key (the cache plugin keys on CD)", () => {
  const q = encodeQuery(1, "a.example.", Type.A);
  const cd = q.slice();
  cd[3] |= 0x10;
  const ad = q.slice();
  ad[3] |= 0x20;
  const keys = new Set([answerKey(q, "udp"), answerKey(cd, "udp"), answerKey(ad, "udp")]);
  assert.equal(keys.size, 3);
});

Deno.test("ttlOffsets: every record's TTL but OPT's, through compressed names", () => {
  const bytes = replyBytes();
  const offsets = ttlOffsets(bytes);
  assert.ok(offsets);
  assert.equal(offsets.length, 2);
  for (const o of offsets) assert.equal((bytes[o + 2] << 8) | bytes[o + 3], 300);
  assert.equal(ttlOffsets(bytes.subarray(0, bytes.length - 1)), undefined, "a cut message");
});

Deno.test("AnswerCache: a reuse entry is sent with the TTL it says, and dropped when it says none", () => {
  const cache = new AnswerCache(() => 0);
  let ttl: number | undefined = 299;
  const hits: [number, number][] = [];
  const observer = (hit: FastHit) => hits.push([hit.requestSize, hit.responseSize]);
  assert.ok(cache.store("k", replyBytes(), { reuse: { ttl: () => ttl }, observers: [observer] }));
  const q = encodeQuery(0x4242, "a.example.", Type.A, { rd: false });
  const sent: number[] = [];
  const out = cache.reply("k", q, (observers, size) => {
    sent.push(size);
    for (const o of observers) {
      o({
        transport: "udp",
        remoteAddress: "127.0.0.1",
        localAddress: "::",
        localPort: 53,
        requestSize: q.length,
        responseSize: size,
        seconds: 0,
      });
    }
  });
  assert.ok(out);
  const m = decodeMessage(out);
  assert.equal(m.id, 0x4242);
  assert.equal(m.recursionDesired, false);
  assert.deepEqual(m.answer.map((r) => r.ttl), [299, 299]);
  const opt = decodeMessage(out).additional.find((r) => r.type === Type.OPT);
  assert.equal(opt?.ttl, 0x8000, "the OPT record's flags are not a TTL");
  assert.deepEqual(hits, [[q.length, out.length]]);
  assert.deepEqual(sent, [out.length]);
  ttl = undefined;
  assert.equal(cache.reply("k", q), undefined);
  assert.equal(cache.size, 0);
  assert.equal(cache.bytes, 0);
});

Deno.test("AnswerCache: bounded by bytes as well as entries, oldest first", () => {
  const cache = new AnswerCache(() => 0, { maxEntries: 1000, maxBytes: 2000 });
  const bytes = replyBytes();
  for (let i = 0; i < 50; i++) {
    cache.store(`k${i}`, bytes, { generation: () => 1, observers: [] });
    assert.ok(cache.bytes <= 2000, `${cache.bytes} bytes held`);
  }
  assert.ok(cache.size < 50 && cache.size > 1);
  const q = encodeQuery(1, "a.example.", Type.A);
  assert.equal(cache.reply("k0", q), undefined, "the oldest went first");
  assert.ok(cache.reply("k49", q));
  const small = new AnswerCache(() => 0, { maxEntries: 2, maxBytes: 1e9 });
  for (const k of ["a", "b", "c"]) small.store(k, bytes, { generation: () => 1, observers: [] });
  assert.equal(small.size, 2);
  assert.equal(small.reply("a", q), undefined);
});

Deno.test("answer cache: replyTo answers as reply(answerKey) does, and a hash collision is a miss, never another name's reply", () => {
  const cache = new AnswerCache();
  const keep = { generation: () => 1, observers: [] };
  // Find two names whose fastKey hashes collide (about 10 pairs expected in 300,000).
  const seen = new Map<number, string>();
  let pair: [string, string] | undefined;
  for (let i = 0; i < 600_000 && !pair; i++) {
    const name = `n${i}.example.`;
    const fast = fastKey(encodeQuery(1, name, Type.A), "udp");
    assert.ok(fast >= 0);
    const other = seen.get(fast >>> 0);
    if (other !== undefined) pair = [other, name];
    else seen.set(fast >>> 0, name);
  }
  assert.ok(pair, "no colliding pair found");
  const replyFor = (name: string, id: number) => {
    const reply = encodeQuery(id, name, Type.A);
    reply[2] |= 0x80;
    return reply;
  };
  const [first, second] = pair;
  for (const name of [first, second]) {
    const query = encodeQuery(7, name, Type.A);
    assert.ok(cache.store(answerKey(query, "udp")!, replyFor(name, 0), keep));
  }
  // The later one holds the hash: it is found; the earlier one is a miss for replyTo, a hit for reply.
  const q2 = encodeQuery(9, second, Type.A);
  assert.deepEqual(cache.replyTo(q2, "udp"), cache.reply(answerKey(q2, "udp")!, q2));
  assert.equal(decodeMessage(cache.replyTo(q2, "udp")!).question[0].name, second);
  const q1 = encodeQuery(9, first, Type.A);
  assert.equal(cache.replyTo(q1, "udp"), undefined);
  assert.ok(cache.reply(answerKey(q1, "udp")!, q1));
  // Other flags, other transport: other keys, misses.
  assert.equal(cache.replyTo(q2, "tcp"), undefined);
  assert.equal(cache.replyTo(encodeQuery(9, second, Type.A, { udpSize: 1232 }), "udp"), undefined);
  // Unusual queries: -1, as answerKey's undefined.
  const response = encodeQuery(1, "a.example.", Type.A);
  response[2] |= 0x80;
  assert.equal(fastKey(response, "udp"), -1);
  assert.equal(answerKey(response, "udp"), undefined);
});

Deno.test("answer cache: fastKey tells apart what answerKey tells apart", () => {
  const variants = [
    encodeQuery(1, "a.example.", Type.A),
    encodeQuery(1, "A.example.", Type.A),
    encodeQuery(1, "a.example.", Type.AAAA),
    encodeQuery(1, "a.example.", Type.A, { udpSize: 1232 }),
    encodeQuery(1, "a.example.", Type.A, { udpSize: 1232, dnssecOk: true }),
    encodeQuery(1, "a.example.", Type.A, { udpSize: 4096 }),
  ];
  const cd = encodeQuery(1, "a.example.", Type.A);
  cd[3] |= 0x10;
  const ad = encodeQuery(1, "a.example.", Type.A);
  ad[3] |= 0x20;
  variants.push(cd, ad);
  const keys = new Set<string>();
  const fast = new Set<number>();
  for (const q of variants) {
    for (const transport of ["udp", "tcp"] as const) {
      keys.add(answerKey(q, transport)!);
      fast.add(fastKey(q, transport));
    }
  }
  assert.equal(keys.size, variants.length * 2);
  assert.equal(fast.size, keys.size);
  // The same query with another ID or RD bit: the same number.
  const rd = encodeQuery(2, "a.example.", Type.A, { rd: false });
  assert.equal(fastKey(rd, "udp"), fastKey(variants[0], "udp"));
});
