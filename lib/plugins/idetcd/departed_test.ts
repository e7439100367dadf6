import assert from "node:assert/strict";
import type { MirrorChange, ZoneCopy } from "../../etcd/mirror.ts";
import type { KeyValue } from "../../etcd/types.ts";
import { DepartedMembers, HOLD_DOWN_MS } from "./departed.ts";
import { parsePattern } from "./pattern.ts";
import { encodeAddress, encodeLock, encodeMemory } from "./records.ts";

const pattern = parsePattern("worker{{.ID}}.tf.local.");

/** A copy whose changes the test applies by hand. */
function fakeCopy() {
  const keys = new Map<string, KeyValue>();
  const listeners = new Set<(c: MirrorChange) => void>();
  const copy = {
    revision: 1,
    generation: 1,
    start: () => Promise.resolve(),
    isReady: () => true,
    range: (prefix: string) => [...keys.values()].filter((kv) => kv.key.startsWith(prefix)),
    get: (key: string) => keys.get(key),
    leaseRemaining: () => undefined,
    onChange(listener: (c: MirrorChange) => void) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  } satisfies ZoneCopy;
  const apply = (puts: KeyValue[], deletes: string[]) => {
    const deleted = deletes.map((k) => keys.get(k)!).filter(Boolean);
    for (const k of deletes) keys.delete(k);
    for (const kv of puts) keys.set(kv.key, kv);
    for (const l of listeners) l({ deleted, relisted: false });
  };
  return { copy, apply };
}

const kv = (key: string, value: string, lease = "7"): KeyValue => ({
  key,
  value,
  lease,
  createRevision: 3,
  modRevision: 3,
});
const lock = kv(
  "/skydns/local/tf/worker2",
  encodeLock({
    id: 2,
    name: "worker2.tf.local.",
    identity: "b",
    addresses: ["10.0.0.2"],
    claimedAt: "",
  }),
);
const ip = kv("/skydns/local/tf/worker2/ip1", encodeAddress("10.0.0.2"));

Deno.test("departed: a name whose lease ended is held down for a while, then dropped", () => {
  const { copy, apply } = fakeCopy();
  let now = 1_000;
  const departed = new DepartedMembers(copy, "/skydns", pattern, () => now);
  apply([lock, ip], []);
  assert.ok(departed.empty);
  apply([], [lock.key, ip.key]);
  assert.deepEqual(departed.members().map((m) => [m.id, m.ipv4]), [[2, ["10.0.0.2"]]]);
  now += HOLD_DOWN_MS - 1;
  assert.equal(departed.members().length, 1);
  now += 2;
  assert.deepEqual(departed.members(), []);
  departed.close();
});

Deno.test("departed: a name released on purpose goes at once", () => {
  const { copy, apply } = fakeCopy();
  const departed = new DepartedMembers(copy, "/skydns", pattern, () => 0);
  apply([lock, ip], []);
  // The release transaction marks the released lease in the "last holder" record.
  apply([kv("/skydns/local/tf/_idetcd/worker2", encodeMemory("b", "", "7"), "0")], [
    lock.key,
    ip.key,
  ]);
  assert.deepEqual(departed.members(), []);
  departed.close();
});
