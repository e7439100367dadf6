import assert from "node:assert/strict";
import type { KeyValue } from "../../etcd/types.ts";
import { parsePattern } from "./pattern.ts";
import { decodeMemoryRecord } from "./records.ts";
import { claimTxn, joinQueue, type ParseCache, readZone, releaseTxn, repairTxn } from "./txns.ts";

const pattern = parsePattern("worker{{.ID}}.tf.local.");
const subject = {
  pattern,
  prefix: "/skydns",
  identity: "node-a",
  addresses: ["10.0.0.1", "2001:db8::1"],
  port: 2222,
};
const base = "/skydns/local/tf";

function kv(key: string, value: string, lease = "0", createRevision = 5): KeyValue {
  return { key, value, lease, createRevision, modRevision: createRevision };
}

Deno.test("txns: joining the queue puts the queue key under the lease and reads nothing", () => {
  const txn = joinQueue(`${base}/_idetcd/queue/77`, "node-a", [3], "77");
  assert.deepEqual(txn.compare, []);
  assert.deepEqual(txn.success, [{
    put: {
      key: `${base}/_idetcd/queue/77`,
      value: JSON.stringify({ idetcdQueue: { identity: "node-a", prefers: [3] } }),
      lease: "77",
    },
  }]);
  assert.equal(txn.failure, undefined);
});

Deno.test("txns: a claim of a free slot is guarded by create_revision 0 and writes every record", () => {
  const write = claimTxn(
    subject,
    4,
    "77",
    { createRevision: 0 },
    [
      `${base}/worker4/ip1`,
      `${base}/worker4/ip3`,
    ],
    `${base}/_idetcd/queue/77`,
    "2026-12-01T00:00:00.000Z",
  );
  assert.equal(write.key, `${base}/worker4`);
  assert.equal(write.name, "worker4.tf.local.");
  assert.deepEqual(write.request.compare, [{ key: `${base}/worker4`, createRevision: 0 }]);
  const puts = write.request.success.flatMap((op) => "put" in op ? [op.put] : []);
  const deletes = write.request.success.flatMap((op) => "delete" in op ? [op.delete.key] : []);
  assert.deepEqual(puts.map((p) => [p.key, p.lease]), [
    [`${base}/worker4`, "77"],
    [`${base}/_idetcd/worker4`, undefined],
    [`${base}/worker4/ip1`, "77"],
    [`${base}/worker4/ip2`, "77"],
  ]);
  assert.deepEqual(JSON.parse(puts[2].value), { host: "10.0.0.1", port: 2222 });
  // ip1 is overwritten; ip3 of an earlier holder is deleted; the queue key goes.
  assert.deepEqual(deletes, [`${base}/worker4/ip3`, `${base}/_idetcd/queue/77`]);
  // A lost race reads only the lock that won.
  assert.deepEqual(write.request.failure, [{ range: { key: `${base}/worker4` } }]);
});

Deno.test("txns: a take-over is guarded by the old lock's mod_revision", () => {
  const write = claimTxn(subject, 2, "88", { modRevision: 41 }, [], "q", "t");
  assert.deepEqual(write.request.compare, [{ key: `${base}/worker2`, modRevision: 41 }]);
});

Deno.test("txns: readZone finds locks, address records, memories and the queue's assignment", () => {
  const lock = (id: number, identity: string, lease: string) =>
    kv(`${base}/worker${id}`, JSON.stringify({ idetcd: { id, identity } }), lease);
  const zone = readZone(
    [
      lock(1, "node-x", "11"),
      kv(`${base}/worker1/ip1`, JSON.stringify({ host: "10.0.0.9" }), "11"),
      lock(3, "node-y", "12"),
      kv(`${base}/_idetcd/worker2`, JSON.stringify({ idetcdLastHolder: { identity: "node-b" } })),
      kv(
        `${base}/_idetcd/queue/20`,
        JSON.stringify({ idetcdQueue: { identity: "node-a" } }),
        "20",
        30,
      ),
      kv(
        `${base}/_idetcd/queue/21`,
        JSON.stringify({ idetcdQueue: { identity: "node-b" } }),
        "21",
        31,
      ),
      // A queued claimer whose identity holds a lock is not in the draw.
      kv(
        `${base}/_idetcd/queue/22`,
        JSON.stringify({ idetcdQueue: { identity: "node-y" } }),
        "22",
        29,
      ),
      kv(`${base}/unrelated`, "{}"),
    ],
    base,
    pattern,
    4,
  );
  assert.deepEqual([...zone.locks.keys()], [1, 3]);
  assert.deepEqual(zone.children.get(1), [`${base}/worker1/ip1`]);
  assert.deepEqual(zone.free, [2, 4]);
  assert.deepEqual(zone.remembered.get("node-b"), [2]);
  assert.deepEqual(zone.holders.get("node-y"), [3]);
  // node-a queued first and takes the lowest free ID; node-b its remembered ID 2 is taken, so 4.
  assert.equal(zone.allocation.get(`${base}/_idetcd/queue/20`), 2);
  assert.equal(zone.allocation.get(`${base}/_idetcd/queue/21`), 4);
  assert.equal(zone.allocation.has(`${base}/_idetcd/queue/22`), false);
});

Deno.test("txns: readZone with a cache decodes each key object once and reads the same", () => {
  const lockKv = kv(`${base}/worker1`, JSON.stringify({ idetcd: { id: 1, identity: "x" } }), "11");
  const queued = kv(
    `${base}/_idetcd/queue/20`,
    JSON.stringify({ idetcdQueue: { identity: "node-a", prefers: [] } }),
    "20",
    30,
  );
  const cache: ParseCache = new WeakMap();
  const first = readZone([lockKv, queued], base, pattern, 3, undefined, cache);
  assert.ok(cache.has(lockKv) && cache.has(queued));
  const again = readZone([lockKv, queued], base, pattern, 3, undefined, cache);
  const plain = readZone([lockKv, queued], base, pattern, 3);
  for (const zone of [again, plain]) {
    assert.deepEqual(zone.free, first.free);
    assert.deepEqual([...zone.allocation], [...first.allocation]);
  }
  assert.equal(first.allocation.get(`${base}/_idetcd/queue/20`), 2);
});

Deno.test("txns: repair is undefined while the records are intact, guarded by the lock otherwise", () => {
  const held = {
    id: 1,
    key: `${base}/worker1`,
    leaseId: "77",
    createRevision: 9,
    addresses: ["10.0.0.1"],
    port: 2222,
  };
  const intact = [
    kv(`${base}/worker1/ip1`, JSON.stringify({ host: "10.0.0.1", port: 2222 }), "77"),
  ];
  assert.equal(repairTxn(held, intact), undefined);
  const changed = [
    kv(`${base}/worker1/ip1`, JSON.stringify({ host: "10.9.9.9", port: 2222 }), "77"),
    kv(`${base}/worker1/ip2`, JSON.stringify({ host: "10.9.9.8" }), "77"),
  ];
  const txn = repairTxn(held, changed)!;
  assert.deepEqual(txn.compare, [
    { key: `${base}/worker1`, createRevision: 9 },
    { key: `${base}/worker1`, lease: "77" },
  ]);
  assert.deepEqual(txn.success, [
    {
      put: {
        key: `${base}/worker1/ip1`,
        value: JSON.stringify({ host: "10.0.0.1", port: 2222 }),
        lease: "77",
      },
    },
    { delete: { key: `${base}/worker1/ip2` } },
  ]);
});

Deno.test("txns: a release marks the released lease and deletes the name, guarded by the lock", () => {
  const held = { id: 2, key: `${base}/worker2`, leaseId: "55", createRevision: 3, addresses: [] };
  const txn = releaseTxn(subject, held, "t");
  assert.deepEqual(txn.compare, [
    { key: `${base}/worker2`, createRevision: 3 },
    { key: `${base}/worker2`, lease: "55" },
  ]);
  const put = txn.success[0];
  assert.ok("put" in put);
  assert.equal(put.put.key, `${base}/_idetcd/worker2`);
  assert.equal(put.put.lease, undefined);
  assert.deepEqual(decodeMemoryRecord(put.put.value), { identity: "node-a", released: "55" });
  assert.deepEqual(txn.success.slice(1), [
    { delete: { key: `${base}/worker2/`, prefix: true } },
    { delete: { key: `${base}/worker2` } },
  ]);
});
