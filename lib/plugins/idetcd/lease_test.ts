import assert from "node:assert/strict";
import type { EtcdKv, TxnResult } from "../../etcd/kv.ts";
import { createLogger } from "../../log.ts";
import { type Clock, defaultMarginMs, LeaseKeeper } from "./lease.ts";

/** A clock the test moves by hand; timers run in time order as it passes them. */
class FakeClock implements Clock {
  t = 10_000;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): number {
    const id = this.#next++;
    this.#timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(handle: number): void {
    this.#timers.delete(handle);
  }
  /** Moves time forward, running each due timer (and letting its promises settle). */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    while (true) {
      const due = [...this.#timers.entries()].filter(([, t]) => t.at <= end)
        .sort(([, a], [, b]) => a.at - b.at)[0];
      if (!due) break;
      this.#timers.delete(due[0]);
      this.t = Math.max(this.t, due[1].at);
      due[1].fn();
      for (let i = 0; i < 5; i++) await Promise.resolve();
    }
    this.t = end;
  }
}

/** etcd's lease calls, answered the way the test says. */
class FakeKv implements EtcdKv {
  keepAlives: { id: string; at: number }[] = [];
  /** What the next keep-alives do: a TTL, "fail", or "hang". */
  answer: number | "fail" | "hang" = 6;
  constructor(readonly clock: FakeClock) {}
  txn(): Promise<TxnResult> {
    return Promise.reject(new Error("not used"));
  }
  range() {
    return Promise.resolve([]);
  }
  grant(ttl: number) {
    return Promise.resolve({ id: "77", ttl });
  }
  keepAlive(id: string, timeoutMs: number): Promise<number> {
    this.keepAlives.push({ id, at: this.clock.now() });
    const answer = this.answer;
    if (answer === "fail") return Promise.reject(new Error("unavailable"));
    if (answer === "hang") {
      return new Promise((_, reject) =>
        this.clock.setTimeout(() => reject(new Error("keepalive timed out")), timeoutMs)
      );
    }
    return Promise.resolve(answer);
  }
  revoke() {
    return Promise.resolve();
  }
}

function keeper(clock: FakeClock, kv: FakeKv, ttlSeconds = 6, marginMs = 1_500) {
  const events: string[] = [];
  const k = new LeaseKeeper(kv, { ttlSeconds, marginMs }, clock, createLogger("", () => {}), {
    expiring: () => events.push(`expiring@${clock.now()}`),
    gone: () => events.push(`gone@${clock.now()}`),
    renewed: () => events.push(`renewed@${clock.now()}`),
  });
  return { k, events };
}

Deno.test("lease keeper: the default margin is a quarter of the lease, at least 1 s, at most half", () => {
  assert.equal(defaultMarginMs(20), 5_000);
  assert.equal(defaultMarginMs(2), 1_000);
  assert.equal(defaultMarginMs(60), 15_000);
});

Deno.test("lease keeper: with etcd answering, the fence never fires", async () => {
  const clock = new FakeClock();
  const kv = new FakeKv(clock);
  const { k, events } = keeper(clock, kv);
  await k.grant();
  await clock.advance(60_000);
  assert.deepEqual(events, []);
  assert.ok(k.vouches());
  // Keep-alives every (6 s - 1.5 s) / 3 = 1.5 s.
  assert.equal(kv.keepAlives[1].at - kv.keepAlives[0].at, 1_500);
  await k.stop();
});

Deno.test("lease keeper: without acknowledged keep-alives it stops vouching at deadline - margin", async () => {
  const clock = new FakeClock();
  const kv = new FakeKv(clock);
  const { k, events } = keeper(clock, kv);
  await k.grant();
  const grantedAt = clock.now();
  kv.answer = "hang";
  await clock.advance(4_400);
  assert.ok(k.vouches(), "still inside the margin");
  assert.deepEqual(events, []);
  await clock.advance(200);
  // The deadline is the grant's send time + 6 s; the fence 1.5 s before it (watchdog steps 200 ms).
  assert.deepEqual(events, [`expiring@${grantedAt + 4_600}`]);
  assert.equal(k.deadline, grantedAt + 6_000);
  // Keep-alives go on; once one is acknowledged the keeper says so.
  kv.answer = 6;
  await clock.advance(3_000);
  const after: string[] = events.slice(1);
  assert.match(after.join(), /^renewed@/);
  assert.ok(k.vouches());
  await k.stop();
});

Deno.test("lease keeper: an acknowledged keep-alive moves the deadline to its send time + TTL, never later", async () => {
  const clock = new FakeClock();
  const kv = new FakeKv(clock);
  const { k } = keeper(clock, kv);
  await k.grant();
  await clock.advance(1_500);
  const sent = kv.keepAlives.at(-1)!.at;
  assert.equal(k.deadline, sent + 6_000);
  await k.stop();
});

Deno.test("lease keeper: a lease etcd no longer has is reported gone at once", async () => {
  const clock = new FakeClock();
  const kv = new FakeKv(clock);
  const { k, events } = keeper(clock, kv);
  await k.grant();
  kv.answer = 0;
  await clock.advance(1_500);
  assert.deepEqual(events, [`gone@${clock.now()}`]);
  assert.equal(k.lease, undefined);
  assert.equal(k.vouches(), false);
  await k.stop();
});

Deno.test("lease keeper: failing keep-alives are retried every 500 ms", async () => {
  const clock = new FakeClock();
  const kv = new FakeKv(clock);
  const { k } = keeper(clock, kv);
  await k.grant();
  kv.answer = "fail";
  await clock.advance(1_500);
  const before = kv.keepAlives.length;
  await clock.advance(1_000);
  assert.equal(kv.keepAlives.length - before, 2);
  await k.stop();
});
