import assert from "node:assert/strict";
import { createLogger } from "../log.ts";
import { compareKeys, KeyIndex, prefixRangeEnd } from "./key_index.ts";
import { LeaseTracker } from "./lease_tracker.ts";
import { describeError } from "./mirror.ts";
import type { KeyValue } from "./types.ts";

const utf8 = new TextEncoder();

/** Byte-wise comparison of the UTF-8 encodings: the order etcd uses. */
function compareBytes(a: string, b: string): number {
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

const kv = (key: string, value = "v", lease = "0"): KeyValue => ({
  key,
  value,
  lease,
  createRevision: 1,
  modRevision: 1,
});

const silent = createLogger("test", () => {});

Deno.test("compareKeys: equals UTF-8 byte order, unlike UTF-16 order", () => {
  const samples = ["", "a", "b", "ab", "\u00e9", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\uffff"];
  samples.push("\u{10000}", "\u{1F600}", "\u{10FFFF}", "a\u{1F600}", "a\uffff", "a\u{10000}b");
  for (const a of samples) {
    for (const b of samples) {
      assert.equal(Math.sign(compareKeys(a, b)), Math.sign(compareBytes(a, b)), `${a} vs ${b}`);
    }
  }
  // Where plain JS comparison gets it wrong:
  assert.ok("\u{1F600}" < "\uffff");
  assert.ok(compareKeys("\u{1F600}", "\uffff") > 0);
});

Deno.test("prefixRangeEnd: increments the last byte below 0xff", () => {
  assert.deepEqual(prefixRangeEnd(utf8.encode("/skydns/")), utf8.encode("/skydns0"));
  assert.deepEqual(prefixRangeEnd(Uint8Array.of(0x61, 0xff, 0xff)), Uint8Array.of(0x62));
  assert.deepEqual(prefixRangeEnd(Uint8Array.of(0xff)), Uint8Array.of(0));
  assert.deepEqual(prefixRangeEnd(new Uint8Array()), Uint8Array.of(0));
});

Deno.test("describeError: first line, no empty resolution note", () => {
  const err = new Error("14 UNAVAILABLE: No connection. Resolution note: \nstack");
  assert.equal(describeError(err), "14 UNAVAILABLE: No connection");
  assert.equal(describeError("plain"), "plain");
});

Deno.test("KeyIndex: range, get and batched updates agree with a naive model", () => {
  // Deterministic pseudo-random operations over a small alphabet (prefix collisions are likely).
  let seed = 42;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const alphabet = ["a", "b", "/", "\u00e9", "\uffff", "\u{1F600}"];
  const randomKey = () => {
    let key = "";
    for (let i = 0, n = 1 + random(4); i < n; i++) key += alphabet[random(alphabet.length)];
    return key;
  };
  const initial = [kv("a"), kv("b/a")];
  const index = new KeyIndex(initial);
  const model = new Map(initial.map((e) => [e.key, e]));
  for (let round = 0; round < 300; round++) {
    // Batches of 1..80 operations exercise both the splice and the merge paths.
    const ops = 1 + random(round % 2 ? 80 : 5);
    for (let i = 0; i < ops; i++) {
      const key = randomKey();
      if (random(3) === 0) {
        index.delete(key);
        model.delete(key);
      } else {
        const value = kv(key, String(round));
        index.put(value);
        model.set(key, value);
      }
    }
    index.commit();
    assert.equal(index.size, model.size);
    const prefix = random(4) === 0 ? "" : randomKey().slice(0, 1 + random(2));
    const expected = [...model.values()]
      .filter((e) => e.key.startsWith(prefix))
      .sort((x, y) => compareBytes(x.key, y.key));
    assert.deepEqual(index.range(prefix), expected, `round ${round}, prefix ${prefix}`);
  }
  for (const [key, value] of model) assert.equal(index.get(key), value);
});

Deno.test("KeyIndex: put then delete in one batch leaves nothing behind", () => {
  const index = new KeyIndex([kv("x")]);
  index.put(kv("y"));
  index.delete("y");
  index.delete("x");
  index.put(kv("x", "again"));
  index.commit();
  assert.deepEqual(index.range("").map((e) => [e.key, e.value]), [["x", "again"]]);
});

Deno.test("LeaseTracker: fetches once per new lease, refreshes at half the TTL, forgets unused", async () => {
  let clock = 0;
  const calls: string[] = [];
  const answers = new Map<string, { ttl: number; granted: number }>([
    ["7", { ttl: 10, granted: 10 }],
    ["8", { ttl: -1, granted: 0 }],
  ]);
  const tracker = new LeaseTracker({
    fetch: (lease) => {
      calls.push(lease);
      return Promise.resolve(answers.get(lease)!);
    },
    canFetch: () => true,
    log: silent,
    now: () => clock,
  });
  try {
    tracker.ref("0"); // no lease: ignored
    tracker.ref("7");
    tracker.ref("7");
    tracker.ref("8");
    assert.equal(tracker.size, 2);
    assert.equal(tracker.remaining("7"), undefined);
    await waitUntil(() => calls.length === 2);
    assert.deepEqual(calls.sort(), ["7", "8"]);
    assert.equal(tracker.remaining("7"), 10);
    assert.equal(tracker.remaining("8"), 0);
    clock = 2_500;
    assert.equal(tracker.remaining("7"), 8); // 7.5 s left, rounded up
    // Not due until less than half the granted TTL is left (clock 5000).
    assert.equal(calls.length, 2);
    tracker.kick();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(calls.filter((c) => c === "7").length, 1);
    clock = 5_000;
    answers.set("7", { ttl: 9, granted: 10 }); // kept alive by someone else
    tracker.kick();
    await waitUntil(() => calls.filter((c) => c === "7").length === 2);
    assert.equal(tracker.remaining("7"), 9);
    tracker.unref("7");
    assert.equal(tracker.size, 2);
    tracker.unref("7");
    tracker.unref("8");
    assert.equal(tracker.size, 0);
    assert.equal(tracker.remaining("7"), undefined);
  } finally {
    await tracker.close();
  }
});

Deno.test("LeaseTracker: failures keep the old answer and are counted", async () => {
  let fail = false;
  let calls = 0;
  let clock = 0;
  const tracker = new LeaseTracker({
    fetch: () => {
      calls++;
      return fail
        ? Promise.reject(new Error("14 UNAVAILABLE"))
        : Promise.resolve({ ttl: 4, granted: 4 });
    },
    canFetch: () => true,
    log: silent,
    now: () => clock,
  });
  try {
    tracker.ref("1");
    await waitUntil(() => tracker.remaining("1") === 4);
    fail = true;
    clock = 3_000;
    tracker.kick();
    await waitUntil(() => tracker.fetchErrors === 1);
    assert.equal(tracker.remaining("1"), 1);
    assert.equal(calls, 2);
  } finally {
    await tracker.close();
  }
});

/** Polls a synchronous condition (real timers drive the tracker). */
async function waitUntil(condition: () => boolean): Promise<void> {
  const deadline = performance.now() + 2_000;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error("condition not met within 2 s");
    await new Promise((r) => setTimeout(r, 2));
  }
}

Deno.test("KeyIndex: deleting every key leaves no entry, sorted key or pending change", () => {
  const index = new KeyIndex();
  for (let i = 0; i < 5_000; i++) index.put(kv(`/p/k${i}`));
  index.commit();
  assert.deepEqual(index.footprint(), { entries: 5_000, sorted: 5_000, pending: 0 });
  // A few at a time (the splice path), then the rest in one batch (the merge path).
  for (let i = 0; i < 10; i++) index.delete(`/p/k${i}`);
  index.commit();
  assert.deepEqual(index.footprint(), { entries: 4_990, sorted: 4_990, pending: 0 });
  for (let i = 10; i < 4_000; i++) index.delete(`/p/k${i}`);
  index.commit();
  assert.deepEqual(index.footprint(), { entries: 1_000, sorted: 1_000, pending: 0 });
  for (let i = 4_000; i < 5_000; i++) index.delete(`/p/k${i}`);
  index.commit();
  assert.deepEqual(index.footprint(), { entries: 0, sorted: 0, pending: 0 });
  assert.deepEqual(index.range(""), []);
});
