import assert from "node:assert/strict";
import { KeyIndex } from "./key_index.ts";
import type { KeyValue } from "./types.ts";

/** Entry `i` of the test set. */
function entry(i: number): KeyValue {
  return {
    key: `/skydns/local/g${i % 10}/h${String(i).padStart(5, "0")}`,
    value: `{"host":"10.0.${i >> 8}.${i & 255}"}`,
    lease: "0",
    createRevision: i + 1,
    modRevision: i + 1,
  };
}

Deno.test("KeyIndex: a sorted array shrunk by small batches is copied smaller, keeping every key and range", () => {
  const total = 8_000;
  const index = new KeyIndex(Array.from({ length: total }, (_, i) => entry(i)));
  assert.equal(index.sortedPeak, total);
  // Deleted a few at a time (nodes leaving one by one), every fifth one kept.
  const kept = new Set<number>();
  for (let i = 0; i < total; i += 16) {
    for (let j = i; j < i + 16; j++) {
      if (j % 5 === 0) kept.add(j);
      else index.delete(entry(j).key);
    }
    index.commit();
    assert.ok(
      index.sortedPeak <= 4 * Math.max(index.size, 1024),
      `peak ${index.sortedPeak} for ${index.size} keys`,
    );
  }
  assert.equal(index.size, kept.size);
  assert.ok(index.sortedPeak < total, "the array was copied at least once");
  for (let i = 0; i < total; i++) {
    assert.equal(index.get(entry(i).key)?.value, kept.has(i) ? entry(i).value : undefined);
  }
  for (let g = 0; g < 10; g++) {
    const expected = [...kept].filter((i) => i % 10 === g).map((i) => entry(i).key).sort();
    assert.deepEqual(index.range(`/skydns/local/g${g}/`).map((kv) => kv.key), expected);
  }
  assert.equal(index.range("/skydns/").length, kept.size);
  // Puts after the copy still land in order.
  index.put(entry(1));
  index.commit();
  assert.deepEqual(
    index.range("/skydns/local/g1/").slice(0, 1).map((kv) => kv.key),
    [entry(1).key],
  );
});
