/**
 * TCP limits of the real program (`deno run main.ts`) with its default
 * limits: a connection must send its first query within 2 s, and at the cap
 * of 1,000 connections idle ones make room, so idle connections cannot shut
 * a real client out.
 */

import assert from "node:assert/strict";
import { Type } from "../lib/dns/types.ts";
import { decodeMessage, encodeQuery } from "../lib/dns/wire.ts";
import { dig, queryTcp, startServer, writeCorefile } from "./helpers/process.ts";
import { freePort, waitFor } from "./helpers/wait.ts";

/** Idle connections the big test holds: more than the server's cap of 1,000. */
const HELD = 1_100;
/** The server's cap (DEFAULT_TCP_LIMITS, restated: the test checks the product). */
const CAP = 1_000;

/** The soft limit on open files of this process (children inherit it). */
async function openFileLimit(): Promise<number> {
  const out = await new Deno.Command("sh", { args: ["-c", "ulimit -n"], stdout: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout).trim();
  return text === "unlimited" ? Infinity : Number(text);
}

/** `query` framed for TCP. */
function framed(id: number, name: string): Uint8Array {
  const q = encodeQuery(id, name, Type.A);
  const out = new Uint8Array(q.length + 2);
  out[0] = q.length >> 8;
  out[1] = q.length & 0xff;
  out.set(q, 2);
  return out;
}

/** Reads one framed reply and returns its ID (null when the stream ends first). */
async function readReplyId(conn: Deno.Conn): Promise<number | null> {
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  while (buf.length < 2 || buf.length < 2 + ((buf[0] << 8) | buf[1])) {
    const n = await conn.read(chunk).catch(() => null);
    if (n === null) return null;
    const next = new Uint8Array(buf.length + n);
    next.set(buf);
    next.set(chunk.subarray(0, n), buf.length);
    buf = next;
  }
  return decodeMessage(buf.slice(2, 2 + ((buf[0] << 8) | buf[1]))).id;
}

/** Resolves when the server ends the stream (EOF or reset). */
function closedByServer(conn: Deno.Conn): Promise<void> {
  return conn.read(new Uint8Array(16)).then(() => {}, () => {});
}

async function whoamiServer() {
  const port = await freePort();
  const conf = await writeCorefile(`.:${port} {\n    whoami\n}\n`);
  return { port, server: await startServer(conf) };
}

Deno.test("tcp: a connection that sends nothing is closed after about 2 s, not before 1.5 s", async () => {
  const { port, server } = await whoamiServer();
  await using _server = server;
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const started = performance.now();
    let closedAt: number | undefined;
    void closedByServer(conn).then(() => (closedAt = performance.now()));
    // Well before the 8 s idle timeout of an established connection.
    await waitFor(() => closedAt !== undefined, {
      timeoutMs: 5_000,
      what: "the server to close a connection that sent nothing",
    });
    const after = closedAt! - started;
    assert.ok(after >= 1_500, `closed after ${after | 0} ms, before the 2 s first-read timeout`);
  } finally {
    conn.close();
  }
});

Deno.test(`tcp: with ${HELD} idle connections held open a real client's query is answered`, async () => {
  // This process and the server each hold a socket per connection.
  const limit = await openFileLimit();
  assert.ok(
    limit >= HELD + 500,
    `open file limit ${limit} is too low for ${HELD} connections; run \`ulimit -n 4096\` first`,
  );
  const { port, server } = await whoamiServer();
  await using _server = server;
  const held: Deno.Conn[] = [];
  const closed = new Set<number>();
  try {
    // Each one asks once and is answered (so it is established, with the 8 s
    // idle timeout), then stays silent. They are opened one after the other,
    // so their order is the order of their last activity.
    for (let i = 0; i < HELD; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      held.push(conn);
      await conn.write(framed(i & 0xffff, `idle${i}.example.`));
      assert.equal(await readReplyId(conn), i & 0xffff, `connection ${i} was answered`);
      void closedByServer(conn).then(() => closed.add(i));
    }
    // A real client, over TCP, twice: dig and a raw query.
    const out = await dig("@127.0.0.1", "-p", String(port), "+tcp", "real.example.org", "A");
    assert.match(out, /status: NOERROR/);
    assert.match(out, /^real\.example\.org\.\s+0\s+IN\s+A\s+127\.0\.0\.1$/m);
    const reply = await queryTcp("127.0.0.1", port, "raw.example.org.", Type.A);
    assert.equal(reply.additional[0]?.data, "127.0.0.1");
    assert.equal(reply.additional[1]?.name, "_tcp.raw.example.org.");

    // Room was made by closing the connections idle the longest: the first
    // ones opened, one per newcomer beyond the cap: the 100 held ones beyond
    // it and dig (queryTcp may take the slot dig freed, or make room too).
    const evicted = HELD + 1 - CAP;
    await waitFor(() => closed.size >= evicted, {
      what: `${evicted} held connections closed by the server; ${closed.size} so far`,
    });
    const order = [...closed].sort((a, b) => a - b);
    assert.deepEqual(
      order.slice(0, evicted),
      Array.from({ length: evicted }, (_, i) => i),
      "the oldest connections were the ones closed",
    );
    // The newer ones are still open.
    assert.ok(!closed.has(HELD - 1), "the newest held connection is still open");
  } finally {
    for (const conn of held) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  }
});

Deno.test(`tcp: with ${HELD} connections that never sent anything a real client is answered`, async () => {
  const limit = await openFileLimit();
  assert.ok(
    limit >= HELD + 500,
    `open file limit ${limit} is too low for ${HELD} connections; run \`ulimit -n 4096\` first`,
  );
  const { port, server } = await whoamiServer();
  await using _server = server;
  const held: Deno.Conn[] = [];
  try {
    // Silent ones: what an attacker opens. Each is idle from its accept on.
    for (let i = 0; i < HELD; i++) held.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    const out = await dig("@127.0.0.1", "-p", String(port), "+tcp", "real.example.org", "A");
    assert.match(out, /status: NOERROR/);
    assert.match(out, /^real\.example\.org\.\s+0\s+IN\s+A\s+127\.0\.0\.1$/m);
  } finally {
    for (const conn of held) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  }
});
