import assert from "node:assert/strict";
import type { MirrorChange, ZoneCopy } from "../../etcd/mirror.ts";
import type { KeyValue } from "../../etcd/types.ts";
import { parsePattern } from "./pattern.ts";
import { encodeQueue } from "./records.ts";
import { ZoneView } from "./zone_view.ts";

const pattern = parsePattern("worker{{.ID}}.tf.local.");
const base = "/skydns/local/tf";

/** An in-memory ZoneCopy whose revision the test moves. */
class FakeCopy implements ZoneCopy {
  keys = new Map<string, KeyValue>();
  revision = 0;
  generation = 0;
  listeners = new Set<(change: MirrorChange) => void>();
  start(): Promise<void> {
    return Promise.resolve();
  }
  isReady(): boolean {
    return true;
  }
  onChange(listener: (change: MirrorChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  range(prefix: string): readonly KeyValue[] {
    return [...this.keys.values()].filter((kv) => kv.key.startsWith(prefix))
      .sort((a, b) => (a.key < b.key ? -1 : 1));
  }
  get(key: string): KeyValue | undefined {
    return this.keys.get(key);
  }
  leaseRemaining(): number | undefined {
    return undefined;
  }
  /** Applies one batch at the next revision. */
  put(key: string, value: string, lease = "0"): number {
    const revision = ++this.revision;
    const old = this.keys.get(key);
    this.keys.set(key, {
      key,
      value,
      lease,
      createRevision: old?.createRevision ?? revision,
      modRevision: revision,
    });
    this.generation++;
    for (const l of this.listeners) l({ deleted: [], relisted: false });
    return revision;
  }
}

Deno.test("zone view: a reading waits for the copy to reach the revision, then is shared", async () => {
  const copy = new FakeCopy();
  const view = new ZoneView(copy, base, pattern, 4);
  copy.put(`${base}/_idetcd/queue/1`, encodeQueue("a", []), "1");
  const pending = view.read(2, 5_000);
  const other = view.read(2, 5_000);
  copy.put(`${base}/_idetcd/queue/2`, encodeQueue("b", []), "2");
  const [reading, same] = await Promise.all([pending, other]);
  assert.ok(reading);
  assert.equal(reading.revision, 2);
  assert.equal(reading.allocation.get(`${base}/_idetcd/queue/1`), 1);
  assert.equal(reading.allocation.get(`${base}/_idetcd/queue/2`), 2);
  assert.equal(same, reading, "waiters at once share one reading");
  assert.equal(view.readings, 1);
  // Already new enough: answered at once, nothing read.
  assert.equal(await view.read(1, 5_000), reading);
  assert.equal(view.readings, 1);
});

Deno.test("zone view: a revision the copy never reaches times out; an abort ends the wait", async () => {
  const copy = new FakeCopy();
  const view = new ZoneView(copy, base, pattern, 4);
  assert.equal(await view.read(5, 20), undefined);
  const abort = new AbortController();
  const waiting = view.read(5, 60_000, abort.signal);
  abort.abort();
  assert.equal(await waiting, undefined);
  assert.equal(copy.listeners.size, 0, "no listener left on the copy once nobody waits");
});

Deno.test("zone view: shared only by claimers of the same pattern and limit", () => {
  const view = new ZoneView(new FakeCopy(), base, pattern, 4);
  assert.ok(view.fits(base, pattern, 4));
  assert.ok(!view.fits(base, pattern, 5));
  assert.ok(!view.fits(base, parsePattern("node{{.ID}}.tf.local."), 4));
});

Deno.test("ZoneView.listed: claimers waiting together share one listing; a newer need lists again", async () => {
  const view = new ZoneView(new FakeCopy(), base, pattern, 10);
  let calls = 0;
  let etcdRevision = 7;
  const gates: (() => void)[] = [];
  const list = () => {
    calls++;
    const at = etcdRevision;
    return new Promise<{ kvs: KeyValue[]; revision: number }>((resolve) =>
      gates.push(() => resolve({ kvs: [], revision: at }))
    );
  };
  const waiting = [view.listed(5, list), view.listed(6, list), view.listed(7, list)];
  assert.equal(calls, 1, "one listing under way serves every waiter");
  gates.shift()!();
  const readings = await Promise.all(waiting);
  assert.ok(readings.every((r) => r.revision === 7));
  assert.equal((await view.listed(7, list)).revision, 7, "a listing new enough is reused");
  assert.equal(calls, 1);
  etcdRevision = 9;
  const newer = view.listed(8, list);
  assert.equal(calls, 2, "a claimer past the last listing lists again");
  gates.shift()!();
  assert.equal((await newer).revision, 9);
  assert.equal(view.listings, 2);
});

Deno.test("ZoneView.listed: a failed listing fails only its caller; a waiter lists again", async () => {
  const view = new ZoneView(new FakeCopy(), base, pattern, 10);
  let calls = 0;
  const failing = view.listed(3, () => {
    calls++;
    return Promise.reject(new Error("4 DEADLINE_EXCEEDED"));
  });
  const waiter = view.listed(3, () => {
    calls++;
    return Promise.resolve({ kvs: [], revision: 4 });
  });
  await assert.rejects(failing, /DEADLINE_EXCEEDED/);
  assert.equal((await waiter).revision, 4);
  assert.equal(calls, 2);
});
