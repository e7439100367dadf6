import assert from "node:assert/strict";
import type { KeyValue } from "../../etcd/types.ts";
import { parsePattern } from "./pattern.ts";
import {
  allocateIds,
  ClusterView,
  encodeAddress,
  encodeLock,
  encodeMemory,
  lockKey,
  memoryKey,
  namePath,
  parseSlotKey,
  queueKey,
} from "./records.ts";

const pattern = parsePattern("worker{{.ID}}.tf.local.");

Deno.test("records: key layout", () => {
  assert.equal(namePath("/skydns", "worker4.tf.local."), "/skydns/local/tf/worker4");
  assert.equal(namePath("skydns/x/", "Tf.Local."), "/skydns/x/local/tf");
  assert.equal(lockKey("/skydns", pattern, 4), "/skydns/local/tf/worker4");
  assert.equal(memoryKey("/skydns", pattern, 4), "/skydns/local/tf/_idetcd/worker4");
  assert.equal(queueKey("/skydns", pattern, "77"), "/skydns/local/tf/_idetcd/queue/77");
  const base = "/skydns/local/tf";
  assert.deepEqual(parseSlotKey(base, pattern, `${base}/worker4`), {
    kind: "lock",
    id: 4,
    label: "worker4",
  });
  assert.deepEqual(parseSlotKey(base, pattern, `${base}/worker4/ip2`), {
    kind: "address",
    id: 4,
    label: "worker4",
    child: "ip2",
  });
  assert.equal(parseSlotKey(base, pattern, `${base}/worker4/x`), undefined);
  assert.equal(parseSlotKey(base, pattern, `${base}/other`), undefined);
  assert.equal(parseSlotKey(base, pattern, `/skydns/local/tfx/worker4`), undefined);
  assert.equal(parseSlotKey(base, pattern, `${base}/_idetcd/worker4`)?.kind, "memory");
  assert.equal(parseSlotKey(base, pattern, `${base}/_idetcd/queue/5`)?.kind, "queue");
  assert.equal(encodeAddress("10.0.0.4"), '{"host":"10.0.0.4"}');
  assert.equal(encodeAddress("10.0.0.4", 2222), '{"host":"10.0.0.4","port":2222}');
});

Deno.test("records: the cluster view reads locks and their own address records only", () => {
  const kv = (key: string, value: string, lease = "7", createRevision = 1): KeyValue => ({
    key,
    value,
    lease,
    createRevision,
    modRevision: createRevision,
  });
  const lock = (id: number, identity: string, lease: string) =>
    kv(
      `/skydns/local/tf/worker${id}`,
      encodeLock({
        id,
        name: pattern.render(id),
        identity,
        addresses: [],
        port: id === 2 ? 2222 : undefined,
        claimedAt: "",
      }),
      lease,
    );
  const view = ClusterView.fromKeys(
    [
      lock(2, "b", "8"),
      kv("/skydns/local/tf/worker2/ip2", encodeAddress("2001:DB8::2"), "8"),
      kv("/skydns/local/tf/worker2/ip1", encodeAddress("10.0.0.2"), "8"),
      kv("/skydns/local/tf/worker2/ip3", encodeAddress("10.9.9.9"), "99"), // another lease's leftover
      lock(1, "a", "7"),
      kv("/skydns/local/tf/worker1/ip1", encodeAddress("10.0.0.1"), "7"),
      kv("/skydns/local/tf/worker3/ip1", encodeAddress("10.0.0.3"), "9"), // no lock: not a member
      kv("/skydns/local/tf/worker4", '{"host":"10.0.0.4"}', "0"), // not an idetcd lock
      kv("/skydns/local/tf/_idetcd/worker1", encodeMemory("a", ""), "0"),
    ],
    "/skydns/local/tf",
    pattern,
  );
  assert.deepEqual(view.members.map((m) => m.id), [1, 2]);
  const two = view.member(2)!;
  assert.deepEqual(two.ipv4, ["10.0.0.2"]);
  assert.deepEqual(two.ipv6, ["2001:db8::2"]);
  assert.equal(two.port, 2222);
  assert.equal(view.byIdentity("a")?.id, 1);
  assert.deepEqual(view.byAddress("10.0.0.1").map((m) => m.id), [1]);
  assert.deepEqual(view.byAddress("10.9.9.9"), []);
});

Deno.test("records: queue allocation is stable as claimers finish", () => {
  const q = (key: string, createRevision: number, prefers: number[] = []) => ({
    key,
    createRevision,
    identity: key,
    prefers,
  });
  const queue = [q("c", 30), q("a", 10), q("b", 20, [5]), q("d", 40)];
  const all = allocateIds(queue, [1, 2, 3, 5, 7]);
  assert.deepEqual(Object.fromEntries(all), { a: 1, b: 5, c: 2, d: 3 });
  // "a" finished (its entry and ID 1 gone): nobody else moves.
  const later = allocateIds(queue.filter((e) => e.key !== "a"), [2, 3, 5, 7]);
  assert.deepEqual(Object.fromEntries(later), { b: 5, c: 2, d: 3 });
  // More claimers than free IDs: the last ones get none.
  assert.deepEqual(Object.fromEntries(allocateIds(queue, [9])), { a: 9 });
  assert.equal(allocateIds(queue, []).size, 0);
});
