import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Listener, type TcpLimits } from "./listen.ts";
import { Dispatcher } from "./dispatch.ts";
import type { BlockRuntime } from "./config.ts";
import type { Plugin, Reply, Request } from "./plugin.ts";
import { decodeMessage, encodeQuery } from "../dns/wire.ts";
import { Type } from "../dns/types.ts";
import { createLogger } from "../log.ts";
import { whoamiReply } from "../plugins/whoami/mod.ts";
import { freePort, waitFor } from "../../tests/helpers/wait.ts";
import { frame as tcpFrame } from "../../tests/helpers/dns.ts";

const quiet = createLogger("test", () => {});
const whoami: Plugin = { name: "whoami", serve: (req) => Promise.resolve(whoamiReply(req)) };

/** Holds replies for names under `held.` until {@link Gate.open}: a query the server still owes. */
class Gate {
  #open!: () => void;
  readonly opened = new Promise<void>((resolve) => (this.#open = resolve));
  /** Held queries that reached the chain: proof the server has read them. */
  arrived = 0;
  open(): void {
    this.#open();
  }
}

async function listening(limits: TcpLimits, gate = new Gate()) {
  const chain = async (req: Request): Promise<Reply> => {
    if (req.qname.endsWith("held.")) {
      gate.arrived++;
      await gate.opened;
    }
    return whoami.serve(req, () => Promise.reject());
  };
  const block: BlockRuntime = {
    zones: ["."],
    keys: [],
    port: 0,
    bind: [],
    chain,
    plugins: [whoami],
    anyClass: false,
  };
  const dispatcher = new Dispatcher(
    { host: "127.0.0.1", port: 0, zones: new Map([[".", block]]) },
    quiet,
  );
  const port = await freePort();
  const listener = new Listener("127.0.0.1", port, dispatcher, quiet, limits);
  listener.open();
  return { listener, port };
}

/** The A query for `name` under `id`, framed for TCP. */
function frame(id: number, name: string): Uint8Array {
  return tcpFrame(encodeQuery(id, name, Type.A));
}

/** Reads length-framed messages until `count` arrived (or the stream ends). */
async function readFrames(conn: Deno.Conn, count: number) {
  const got: ReturnType<typeof decodeMessage>[] = [];
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  while (got.length < count) {
    const n = await conn.read(chunk);
    if (n === null) break;
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
    while (buf.length >= 2 && buf.length >= 2 + ((buf[0] << 8) | buf[1])) {
      const len = (buf[0] << 8) | buf[1];
      got.push(decodeMessage(buf.slice(2, 2 + len)));
      buf = buf.slice(2 + len);
    }
  }
  return got;
}

/** Connects and gets one answer, so the connection is established and then idle. */
async function established(port: number, id: number): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(frame(id, `c${id}.example.`));
  assert.equal((await readFrames(conn, 1))[0]?.id, id);
  return conn;
}

/** Asks once more on `conn`; true when the answer arrives (false when the server closed it). */
async function answers(conn: Deno.Conn, id: number): Promise<boolean> {
  await conn.write(frame(id, `again${id}.example.`)).catch(() => 0);
  return (await readFrames(conn, 1).catch(() => []))[0]?.id === id;
}

/** Resolves when the server ends the stream (a read sees EOF or a reset). */
function closedByServer(conn: Deno.Conn): Promise<void> {
  return conn.read(new Uint8Array(16)).then(() => {}, () => {});
}

function closeAll(conns: Deno.Conn[]): void {
  for (const c of conns) {
    try {
      c.close();
    } catch {
      // already closed
    }
  }
}

Deno.test("listen: several pipelined queries on one TCP connection all get their answers", async () => {
  const { listener, port } = await listening({
    firstReadTimeoutMs: 5_000,
    idleTimeoutMs: 5_000,
    maxConnections: 10,
  });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const frames = [frame(1, "a.example."), frame(2, "b.example."), frame(3, "c.example.")];
      const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
      let at = 0;
      for (const f of frames) {
        all.set(f, at);
        at += f.length;
      }
      await conn.write(all);
      const replies = await readFrames(conn, 3);
      assert.deepEqual(replies.map((m) => m.id).sort(), [1, 2, 3]);
      const byId = new Map(replies.map((m) => [m.id, m]));
      assert.equal(byId.get(2)?.additional[1].name, "_tcp.b.example.");
    } finally {
      conn.close();
    }
  } finally {
    await listener.close();
  }
});

Deno.test("listen: after its first query a TCP connection gets the idle timeout, not the first-read one", async () => {
  const { listener, port } = await listening({
    firstReadTimeoutMs: 100,
    idleTimeoutMs: 600,
    maxConnections: 10,
  });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(frame(7, "x.example."));
      assert.equal((await readFrames(conn, 1))[0].id, 7);
      const started = performance.now();
      // The server closes its end: the next read sees the end of the stream.
      assert.equal(await conn.read(new Uint8Array(16)), null);
      const waited = performance.now() - started;
      assert.ok(waited >= 500, `closed after ${waited | 0} ms, before the idle timeout`);
    } finally {
      conn.close();
    }
  } finally {
    await listener.close();
  }
});

Deno.test("listen: a TCP connection that sends nothing is closed at the first-read timeout", async () => {
  const { listener, port } = await listening({
    firstReadTimeoutMs: 300,
    idleTimeoutMs: 60_000,
    maxConnections: 10,
  });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const started = performance.now();
      let closedAt: number | undefined;
      void closedByServer(conn).then(() => (closedAt = performance.now()));
      // Long before the 60 s idle timeout: the first-read timeout closed it.
      await waitFor(() => closedAt !== undefined, {
        timeoutMs: 10_000,
        what: "the server to close a silent connection",
      });
      const after = closedAt! - started;
      assert.ok(after >= 250, `closed after ${after | 0} ms, before the first-read timeout`);
    } finally {
      conn.close();
    }
  } finally {
    await listener.close();
  }
});

Deno.test("listen: at the cap the idle connection with the oldest activity makes room; busy ones stay", async () => {
  const gate = new Gate();
  const { listener, port } = await listening(
    { firstReadTimeoutMs: 5_000, idleTimeoutMs: 5_000, maxConnections: 4 },
    gate,
  );
  const conns: Deno.Conn[] = [];
  try {
    // owing: the oldest, but the server still owes it a reply (not idle).
    const owing = await Deno.connect({ hostname: "127.0.0.1", port });
    conns.push(owing);
    await owing.write(frame(1, "a.held."));
    const owed = readFrames(owing, 1).catch(() => []);
    await waitFor(() => gate.arrived === 1, { what: "the held query to reach the chain" });
    // partial: half a message read (not idle). It goes in one write behind a
    // whole query, so the answer to that one shows the half has been read too.
    const partial = await Deno.connect({ hostname: "127.0.0.1", port });
    conns.push(partial);
    const partialFrame = frame(2, "partial.example.");
    await partial.write(Buffer.concat([frame(20, "whole.example."), partialFrame.subarray(0, 5)]));
    assert.equal((await readFrames(partial, 1))[0]?.id, 20);
    // Two idle ones; the first is then used again, so the second has the oldest activity.
    const first = await established(port, 3);
    const second = await established(port, 4);
    conns.push(first, second);
    assert.ok(await answers(first, 5));
    const secondClosed = closedByServer(second);

    const newcomer = await established(port, 6);
    conns.push(newcomer);
    await secondClosed;
    assert.equal(await answers(second, 7), false);
    // The others were not touched.
    assert.ok(await answers(first, 8));
    await partial.write(partialFrame.subarray(5));
    assert.equal((await readFrames(partial, 1))[0]?.id, 2);
    gate.open();
    assert.equal((await owed)[0]?.id, 1);
  } finally {
    closeAll(conns);
    await listener.close();
  }
});

Deno.test("listen: at the cap with every connection busy a new one is closed at once", async () => {
  const gate = new Gate();
  const { listener, port } = await listening(
    { firstReadTimeoutMs: 5_000, idleTimeoutMs: 5_000, maxConnections: 2 },
    gate,
  );
  const conns: Deno.Conn[] = [];
  try {
    const owed: Promise<ReturnType<typeof decodeMessage>[]>[] = [];
    for (let i = 0; i < 2; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(c);
      await c.write(frame(i, `q${i}.held.`));
      owed.push(readFrames(c, 1).catch(() => []));
    }
    await waitFor(() => gate.arrived === 2, { what: "both held queries to reach the chain" });
    const extra = await Deno.connect({ hostname: "127.0.0.1", port });
    conns.push(extra);
    await extra.write(frame(9, "extra.example.")).catch(() => 0);
    assert.deepEqual(await readFrames(extra, 1).catch(() => []), []);
    // The busy ones were not touched: they get their answers.
    gate.open();
    for (let i = 0; i < 2; i++) assert.equal((await owed[i])[0]?.id, i);
    // Now idle: a newcomer gets in (the oldest idle one makes room).
    conns.push(await established(port, 11));
  } finally {
    closeAll(conns);
    await listener.close();
  }
});

Deno.test("listen: the idle timeout counts per message, so a trickling client is cut off", async () => {
  const { listener, port } = await listening({
    firstReadTimeoutMs: 300,
    idleTimeoutMs: 300,
    maxConnections: 10,
  });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const bytes = frame(5, "slow.example.");
      const started = performance.now();
      let closedAt: number | undefined;
      const reading = conn.read(new Uint8Array(16)).then(() => (closedAt = performance.now()));
      // One byte every 100 ms would keep a per-read timeout alive for seconds.
      for (let i = 0; i < bytes.length && closedAt === undefined; i++) {
        await conn.write(bytes.subarray(i, i + 1)).catch(() => 0);
        await new Promise((r) => setTimeout(r, 100));
      }
      await reading;
      const after = (closedAt ?? performance.now()) - started;
      assert.ok(
        after < 1_500,
        `closed after ${after | 0} ms; a whole message was not due for seconds`,
      );
    } finally {
      conn.close();
    }
  } finally {
    await listener.close();
  }
});
