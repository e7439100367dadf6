/**
 * The batched socket on real sockets: answers, sources, dual stack, bind,
 * truncation, replies sent later, errno-based errors, clean close.
 * Ignored where the batched path cannot be had (it says why).
 */

import assert from "node:assert/strict";
import { BatchedUdp, DEFAULT_BATCH, MAX_BATCHES_PER_TURN } from "./batch_loop.ts";
import { batchedUnavailable } from "./mod.ts";
import { openLibc } from "./ffi.ts";
import type { UdpAnswer, UdpSource } from "./types.ts";
import { createLogger } from "../../log.ts";

const quiet = createLogger("test", () => {});
const unavailable = batchedUnavailable();
if (unavailable) console.error(`batch_loop_test: ignored: ${unavailable}`);
const ignore = unavailable !== undefined;

/** Has this host an IPv6 loopback? */
const hasIPv6 = (() => {
  try {
    Deno.listenDatagram({ transport: "udp", hostname: "::1", port: 0 }).close();
    return true;
  } catch {
    return false;
  }
})();

/** A client socket on `hostname` that sends and collects replies until a deadline. */
class Client {
  readonly sock: Deno.DatagramConn;
  constructor(hostname = "127.0.0.1") {
    this.sock = Deno.listenDatagram({ transport: "udp", hostname, port: 0 });
  }
  get port(): number {
    return (this.sock.addr as Deno.NetAddr).port;
  }
  send(bytes: Uint8Array, hostname: string, port: number): Promise<number> {
    return this.sock.send(bytes, { transport: "udp", hostname, port });
  }
  /** Replies until `count` arrived or `ms` passed. */
  async collect(count: number, ms = 5_000): Promise<Uint8Array[]> {
    const got: Uint8Array[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<null>((r) => (timer = setTimeout(() => r(null), ms)));
    try {
      while (got.length < count) {
        const next = await Promise.race([this.sock.receive(), deadline]);
        if (!next) break;
        got.push(next[0]);
      }
    } finally {
      clearTimeout(timer);
    }
    return got;
  }
  close(): void {
    this.sock.close();
  }
}

/** Open file descriptors of this process. */
function fdCount(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

const text = new TextEncoder();
const read = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test({
  name: "batched: every datagram is answered to its own sender, with its address and port",
  ignore,
  async fn() {
    const seen: { address: string; port: number; data: string }[] = [];
    const udp = BatchedUdp.open("", 0, quiet);
    const serving = udp.serve((data, source: UdpSource) => {
      seen.push({ address: source.address, port: source.port, data: read(data) });
      return text.encode(`re:${read(data)}`);
    });
    const clients = [new Client(), new Client()];
    try {
      assert.equal(udp.localAddress, "::");
      for (let i = 0; i < 50; i++) {
        const c = clients[i % 2];
        await c.send(text.encode(`q${i}`), "127.0.0.1", udp.localPort);
      }
      const replies = await Promise.all(clients.map((c) => c.collect(25)));
      for (let k = 0; k < 2; k++) {
        assert.deepEqual(
          replies[k].map(read).sort(),
          Array.from({ length: 25 }, (_, j) => `re:q${j * 2 + k}`).sort(),
        );
      }
      assert.equal(seen.length, 50);
      for (const s of seen) {
        // IPv4 on the dual-stack socket arrives v4-mapped; the source unwraps it.
        assert.equal(s.address, "127.0.0.1");
        const i = Number(s.data.slice(1));
        assert.equal(s.port, clients[i % 2].port);
      }
      assert.equal(udp.stats.received, 50);
      assert.equal(udp.stats.sent, 50);
    } finally {
      clients.forEach((c) => c.close());
      await udp.close();
      await serving;
    }
  },
});

Deno.test({
  name: "batched: with no bind one socket serves IPv4 and IPv6 clients",
  ignore: ignore || !hasIPv6,
  async fn() {
    const sources: string[] = [];
    const udp = BatchedUdp.open("", 0, quiet);
    const serving = udp.serve((data, source) => {
      sources.push(source.address);
      return data.slice();
    });
    const v4 = new Client("127.0.0.1");
    const v6 = new Client("::1");
    try {
      await v4.send(text.encode("four"), "127.0.0.1", udp.localPort);
      assert.deepEqual((await v4.collect(1)).map(read), ["four"]);
      await v6.send(text.encode("six"), "::1", udp.localPort);
      assert.deepEqual((await v6.collect(1)).map(read), ["six"]);
      assert.deepEqual(sources, ["127.0.0.1", "::1"]);
    } finally {
      v4.close();
      v6.close();
      await udp.close();
      await serving;
    }
  },
});

Deno.test({
  name: "batched: a bind address is honoured (IPv4 and IPv6), and the port is the one bound",
  ignore,
  async fn() {
    const udp = BatchedUdp.open("127.0.0.1", 0, quiet);
    const serving = udp.serve((data) => data.slice());
    try {
      assert.equal(udp.localAddress, "127.0.0.1");
      assert.ok(udp.localPort > 0);
      // The same port on the same address is taken: the errno reaches us as Deno's error.
      assert.throws(
        () => BatchedUdp.open("127.0.0.1", udp.localPort, quiet),
        Deno.errors.AddrInUse,
      );
      // Another loopback address on that port is free: the socket is bound to 127.0.0.1 only.
      const other = BatchedUdp.open("127.0.0.2", udp.localPort, quiet);
      await other.close();
      if (hasIPv6) {
        const v6 = BatchedUdp.open("::1", udp.localPort, quiet);
        assert.equal(v6.localAddress, "::1");
        await v6.close();
      }
      // An address this host does not have.
      assert.throws(() => BatchedUdp.open("192.0.2.1", 0, quiet), Deno.errors.AddrNotAvailable);
      assert.throws(() => BatchedUdp.open("not-an-ip", 0, quiet), /not an IP address/);
      const c = new Client();
      try {
        await c.send(text.encode("x"), "127.0.0.1", udp.localPort);
        assert.deepEqual((await c.collect(1)).map(read), ["x"]);
      } finally {
        c.close();
      }
    } finally {
      await udp.close();
      await serving;
    }
  },
});

Deno.test({
  name: "batched: a datagram larger than the slot is detected (MSG_TRUNC) and dropped",
  ignore,
  async fn() {
    const handled: number[] = [];
    const udp = BatchedUdp.open("127.0.0.1", 0, quiet, { slot: 512 });
    const serving = udp.serve((data) => {
      handled.push(data.length);
      return data.slice(0, 4);
    });
    const c = new Client();
    try {
      await c.send(new Uint8Array(513).fill(7), "127.0.0.1", udp.localPort);
      await c.send(new Uint8Array(512).fill(1), "127.0.0.1", udp.localPort);
      const got = await c.collect(1);
      assert.deepEqual(got.map((b) => b[0]), [1]);
      assert.deepEqual(handled, [512]);
      assert.equal(udp.stats.truncated, 1);
    } finally {
      c.close();
      await udp.close();
      await serving;
    }
  },
});

Deno.test({
  name: "batched: replies not ready in the batch go out later through the same socket",
  ignore,
  async fn() {
    // Hundreds at once, more than one batch and more than the send slots,
    // resolved in a shuffled order after the loop has gone back to poll.
    const release: (() => void)[] = [];
    const udp = BatchedUdp.open("127.0.0.1", 0, quiet);
    const serving = udp.serve((data): UdpAnswer => {
      const copy = data.slice();
      return new Promise((resolve) => release.push(() => resolve(copy)));
    });
    const c = new Client();
    const n = DEFAULT_BATCH * 5;
    try {
      for (let i = 0; i < n; i++) await c.send(text.encode(`d${i}`), "127.0.0.1", udp.localPort);
      const deadline = performance.now() + 5_000;
      while (release.length < n && performance.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(release.length, n, "every datagram reached the handler");
      const order = release.map((_, i) => i).sort((a, b) => ((a * 7919) % n) - ((b * 7919) % n));
      const collecting = c.collect(n);
      // In chunks across timer turns, as a chain's awaits would resolve.
      for (let i = 0; i < order.length; i += 37) {
        for (const k of order.slice(i, i + 37)) release[k]();
        await new Promise((r) => setTimeout(r, 1));
      }
      const got = (await collecting).map(read).sort();
      assert.deepEqual(got, Array.from({ length: n }, (_, i) => `d${i}`).sort());
    } finally {
      c.close();
      await udp.close();
      await serving;
    }
  },
});

Deno.test({
  name: "batched: close ends the loop and closes both descriptors; nothing leaks over many cycles",
  ignore,
  async fn() {
    const before = fdCount();
    for (let i = 0; i < 20; i++) {
      const udp = BatchedUdp.open(i % 2 ? "127.0.0.1" : "", 0, quiet);
      // Half of them served (close wakes the poll), half never (close releases at once).
      const serving = i % 2 ? udp.serve(() => null) : Promise.resolve();
      await udp.close();
      await serving;
      await udp.close(); // twice is harmless
    }
    assert.equal(fdCount(), before);
    // A failed open (address in use) leaks nothing either.
    const held = BatchedUdp.open("127.0.0.1", 0, quiet);
    const mid = fdCount();
    for (let i = 0; i < 10; i++) {
      assert.throws(
        () => BatchedUdp.open("127.0.0.1", held.localPort, quiet),
        Deno.errors.AddrInUse,
      );
    }
    assert.equal(fdCount(), mid);
    await held.close();
    assert.equal(fdCount(), before);
  },
});

Deno.test({
  name: "batched: close returns while the socket is idle in poll, well within its timeout",
  ignore,
  async fn() {
    const udp = BatchedUdp.open("127.0.0.1", 0, quiet);
    const serving = udp.serve(() => null);
    // Let the loop reach its poll.
    await new Promise((r) => setTimeout(r, 20));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const closed = await Promise.race([
      udp.close().then(() => true),
      new Promise<false>((r) => (timer = setTimeout(() => r(false), 2_000))),
    ]);
    clearTimeout(timer);
    assert.ok(closed, "close did not return within 2 s");
    await serving;
    // A datagram after close gets no answer and nothing throws.
    const c = new Client();
    try {
      await c.send(text.encode("late"), "127.0.0.1", udp.localPort).catch(() => 0);
      assert.deepEqual(await c.collect(1, 200), []);
    } finally {
      c.close();
    }
  },
});

Deno.test({
  name: "batched: datagrams come in batches, and a turn's budget lets timers run mid-flood",
  ignore,
  async fn() {
    // Small batches, so the turn's budget (MAX_BATCHES_PER_TURN batches) is
    // far below what is queued; the handler is slow, so the 0 ms timer is
    // due long before the queue is drained. If the loop did not yield, the
    // timer would only fire after every queued datagram was handled.
    const udp = BatchedUdp.open("127.0.0.1", 0, quiet, { batch: 4 });
    const c = new Client();
    const queued = 100;
    let answered = 0;
    let answeredAtTimer: number | undefined;
    try {
      for (let i = 0; i < queued; i++) {
        await c.send(text.encode("busy"), "127.0.0.1", udp.localPort);
      }
      setTimeout(() => (answeredAtTimer = answered), 0);
      const serving = udp.serve((data) => {
        const until = performance.now() + 0.3;
        while (performance.now() < until) {
          // the work of a slow chain
        }
        answered++;
        return data.slice();
      });
      const replies = await c.collect(queued, 10_000);
      assert.ok(replies.length >= 50, `only ${replies.length} of ${queued} queued datagrams kept`);
      assert.ok(answeredAtTimer !== undefined, "the timer never fired");
      // The loop yields after one turn at most, however many datagrams are queued
      // (a loaded machine may have dropped some of the 100: count the budget, not them).
      assert.ok(
        answeredAtTimer <= MAX_BATCHES_PER_TURN * 4,
        `the timer waited for ${answeredAtTimer} datagrams (more than one turn's ${
          MAX_BATCHES_PER_TURN * 4
        }) of ${replies.length}`,
      );
      // More than one datagram per recvmmsg call.
      assert.ok(udp.stats.batches < udp.stats.received, JSON.stringify(udp.stats));
      await udp.close();
      await serving;
    } finally {
      c.close();
      await udp.close();
    }
  },
});

Deno.test({
  name: "batched: a handler that throws or returns nothing costs only that datagram",
  ignore,
  async fn() {
    const udp = BatchedUdp.open("127.0.0.1", 0, quiet);
    const serving = udp.serve((data) => {
      const t = read(data);
      if (t === "throw") throw new Error("boom");
      if (t === "reject") return Promise.reject(new Error("later boom"));
      if (t === "none") return null;
      if (t === "huge") return new Uint8Array(70_000);
      return data.slice();
    });
    const c = new Client();
    try {
      for (const t of ["throw", "reject", "none", "huge", "ok"]) {
        await c.send(text.encode(t), "127.0.0.1", udp.localPort);
      }
      assert.deepEqual((await c.collect(1)).map(read), ["ok"]);
      assert.deepEqual(await c.collect(1, 200), []);
      assert.equal(udp.stats.dropped, 1);
    } finally {
      c.close();
      await udp.close();
      await serving;
    }
  },
});

Deno.test({
  name: "batched: libc is opened once for the process and stays open across sockets",
  ignore,
  async fn() {
    // Closing a library whose nonblocking symbols have run is a path this
    // code never takes: every socket uses the one handle, which is never closed.
    const first = openLibc();
    for (let i = 0; i < 5; i++) {
      const udp = BatchedUdp.open("127.0.0.1", 0, quiet);
      const serving = udp.serve(() => null);
      await udp.close();
      await serving;
    }
    assert.equal(openLibc(), first);
  },
});

Deno.test({
  name: "batched: isolates torn down while their socket sits in poll write no freed memory",
  ignore,
  async fn() {
    // The cause of "free(): invalid pointer" (issue #12): a test module's (or
    // Worker's) isolate could end while its loop's poll still ran on Deno's
    // blocking pool, and poll then wrote revents (zeros, on its timeout) into
    // the pollfd array in the isolate's freed arena. With the array in
    // malloc'd memory that no one frees while a poll may run, the late write
    // lands in leaked bytes. This tears isolates down mid-poll many times in
    // this process (a smoke test: the old layout took a few hundred of these
    // in a stress run of its own before a process panicked, see the README).
    const worker = new URL("./testdata/poll_worker.ts", import.meta.url);
    for (let round = 0; round < 5; round++) {
      await Promise.all([0, 1, 2].map(async (i) => {
        const w = new Worker(worker, { type: "module" });
        try {
          const said = await new Promise<string>((resolve, reject) => {
            w.onmessage = (e) => resolve(String(e.data));
            w.onerror = (e) => {
              e.preventDefault();
              reject(new Error(e.message));
            };
            w.postMessage({ batch: 1 + i, slot: 64 });
          });
          assert.match(said, /^polling [1-9]/);
          // Anywhere inside the 100 ms poll, or just after it began.
          await new Promise((resolve) => setTimeout(resolve, (round * 17 + i * 29) % 90));
        } finally {
          w.terminate();
        }
      }));
      // Churn the allocator so that a stray write would be met.
      const junk = Array.from({ length: 500 }, (_, k) => new Uint8Array(64 + (k % 300)));
      assert.equal(junk.length, 500);
    }
  },
});
