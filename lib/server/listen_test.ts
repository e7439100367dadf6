import assert from "node:assert/strict";
import { Listener } from "./listen.ts";
import { Dispatcher } from "./dispatch.ts";
import type { BlockRuntime } from "./config.ts";
import type { Plugin } from "./plugin.ts";
import { decodeMessage, encodeQuery } from "../dns/wire.ts";
import { Type } from "../dns/types.ts";
import { createLogger } from "../log.ts";
import { whoamiReply } from "../plugins/whoami/mod.ts";
import { freePort, waitFor } from "../../tests/helpers/wait.ts";

const quiet = createLogger("test", () => {});
const whoami: Plugin = { name: "whoami", serve: (req) => Promise.resolve(whoamiReply(req)) };

async function listening(limits: { idleTimeoutMs: number; maxConnections: number }) {
  const block: BlockRuntime = {
    zones: ["."],
    keys: [],
    port: 0,
    bind: [],
    chain: (req) => whoami.serve(req, () => Promise.reject()),
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

function frame(id: number, name: string): Uint8Array {
  const q = encodeQuery(id, name, Type.A);
  const out = new Uint8Array(q.length + 2);
  out[0] = q.length >> 8;
  out[1] = q.length & 0xff;
  out.set(q, 2);
  return out;
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

Deno.test("listen: several pipelined queries on one TCP connection all get their answers", async () => {
  const { listener, port } = await listening({ idleTimeoutMs: 5_000, maxConnections: 10 });
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

Deno.test("listen: an idle TCP connection is closed after the idle timeout", async () => {
  const { listener, port } = await listening({ idleTimeoutMs: 200, maxConnections: 10 });
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(frame(7, "x.example."));
      assert.equal((await readFrames(conn, 1))[0].id, 7);
      const started = performance.now();
      // The server closes its end: the next read sees the end of the stream.
      assert.equal(await conn.read(new Uint8Array(16)), null);
      const waited = performance.now() - started;
      assert.ok(waited >= 150, `closed after ${waited | 0} ms, before the idle timeout`);
    } finally {
      conn.close();
    }
  } finally {
    await listener.close();
  }
});

Deno.test("listen: connections beyond the cap are closed at once; the others keep working", async () => {
  const { listener, port } = await listening({ idleTimeoutMs: 5_000, maxConnections: 2 });
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      conns.push(c);
      await c.write(frame(i, "held.example."));
      assert.equal((await readFrames(c, 1)).length, 1);
    }
    const extra = await Deno.connect({ hostname: "127.0.0.1", port });
    conns.push(extra);
    await extra.write(frame(9, "extra.example.")).catch(() => 0);
    assert.deepEqual(await readFrames(extra, 1), []);
    await conns[0].write(frame(10, "still.example."));
    assert.equal((await readFrames(conns[0], 1))[0].id, 10);
    // Once one closes, a new connection is served again.
    conns[1].close();
    conns.splice(1, 1);
    await waitFor(async () => {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await c.write(frame(11, "again.example.")).catch(() => 0);
        return (await readFrames(c, 1)).length === 1;
      } finally {
        c.close();
      }
    }, { what: "a connection to be served after another closed" });
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
    await listener.close();
  }
});

Deno.test("listen: the idle timeout counts per message, so a trickling client is cut off", async () => {
  const { listener, port } = await listening({ idleTimeoutMs: 300, maxConnections: 10 });
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
