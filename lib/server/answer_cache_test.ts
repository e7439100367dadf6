import assert from "node:assert/strict";
import { AnswerCache, answerKey, MAX_AGE_MS } from "./answer_cache.ts";
import { encodeQuery } from "../dns/wire.ts";
import { Type } from "../dns/types.ts";

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
  cache.store("k", new Uint8Array([0, 0, 0x85, 0x00, 9, 9]), () => generation);
  const hit = cache.reply("k", q);
  assert.deepEqual(hit?.subarray(0, 2), Uint8Array.from([0x12, 0x34]));
  now = MAX_AGE_MS + 1;
  assert.equal(cache.reply("k", q), undefined);
  now = 0;
  cache.store("k", new Uint8Array([0, 0, 0x85, 0, 9, 9]), () => generation);
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
