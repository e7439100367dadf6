/**
 * Junk at the sockets: random and mutated packets must never take the server down.
 *
 * The UDP junk runs against both UDP paths whatever the suite's IDETCD_UDP
 * says: the batched one (recvmmsg into buffers the kernel writes, where a
 * layout mistake would corrupt memory), once more with V8 moving objects
 * on every collection and collecting often, and the portable one.
 */

import assert from "node:assert/strict";
import { queryTcp, queryUdp, startServer, writeCorefile } from "./helpers/process.ts";
import { freePort } from "./helpers/wait.ts";
import { encodeQuery } from "../lib/dns/wire.ts";
import { Type } from "../lib/dns/types.ts";
import { batchedUnavailable } from "../lib/server/udp/mod.ts";

const batchedMissing = batchedUnavailable();
if (batchedMissing) console.error(`fuzz: the batched UDP path is ignored: ${batchedMissing}`);

/** A small deterministic PRNG, so a failure can be replayed. */
function prng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Hand-made nasties: compression pointers that loop (to themselves, to each
 * other, forward past the end), absurd section counts on tiny packets,
 * empty and maximum-size datagrams.
 */
function nasty(rand: () => number, i: number): Uint8Array {
  const header = (qd: number, an: number, ns: number, ar: number) => {
    const h = new Uint8Array(12);
    h[0] = i >> 8;
    h[1] = i & 0xff;
    h[2] = 0x01;
    [qd, an, ns, ar].forEach((n, k) => {
      h[4 + k * 2] = n >> 8;
      h[5 + k * 2] = n & 0xff;
    });
    return h;
  };
  const join = (...parts: ArrayLike<number>[]) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
  switch (i % 8) {
    case 0: // the question name is a pointer to itself
      return join(header(1, 0, 0, 0), [0xc0, 12, 0, 1, 0, 1]);
    case 1: // two pointers pointing at each other
      return join(header(1, 0, 0, 0), [0xc0, 14, 0xc0, 12, 0, 1, 0, 1]);
    case 2: // a label, then a pointer back to the label (an endless name)
      return join(header(1, 0, 0, 0), [1, 0x61, 0xc0, 12, 0, 1, 0, 1]);
    case 3: // a pointer past the end of the packet
      return join(header(1, 0, 0, 0), [0xff, 0xff, 0, 1, 0, 1]);
    case 4: // every count at 65,535 on a packet with one question
      return join(header(0xffff, 0xffff, 0xffff, 0xffff), [1, 0x61, 0, 0, 1, 0, 1]);
    case 5: // an answer record whose rdata length runs far past the end, compressed owner
      return join(header(1, 1, 0, 0), [1, 0x61, 0, 0, 1, 0, 1], [0xc0, 12, 0, 1, 0, 1], [
        0,
        0,
        0,
        0,
        0xff,
        0xff,
        1,
      ]);
    case 6: // empty datagram
      return new Uint8Array(0);
    default: // up to the largest IPv4 UDP payload (65,507 bytes), random bytes behind a header
      return join(
        header(1, 0, 0, 1),
        Uint8Array.from({ length: 64_000 + Math.floor(rand() * 1_496) }, () => rand() * 256),
      );
  }
}

function junk(rand: () => number, i: number): Uint8Array {
  const types = [Type.A, Type.AAAA, Type.SRV, Type.TXT, Type.ANY, Type.OPT, 0, 65535];
  const base = encodeQuery(
    i & 0xffff,
    `n${i}.Example.org.`,
    types[i % types.length],
    i % 3 === 0 ? { udpSize: Math.floor(rand() * 65536) } : {},
  );
  switch (i % 4) {
    case 0: // pure noise of random length
      return Uint8Array.from({ length: Math.floor(rand() * 600) }, () => Math.floor(rand() * 256));
    case 1: { // a valid query with random bytes flipped
      const b = base.slice();
      for (let k = 0; k < 1 + rand() * 6; k++) b[Math.floor(rand() * b.length)] = rand() * 256;
      return b;
    }
    case 2: // truncated at a random point
      return base.slice(0, Math.floor(rand() * base.length));
    default: { // garbage appended, counts inflated, compression pointers
      const b = new Uint8Array(base.length + 40);
      b.set(base);
      for (let k = base.length; k < b.length; k++) b[k] = rand() < 0.3 ? 0xc0 : rand() * 256;
      b[7] = Math.floor(rand() * 4);
      b[11] = Math.floor(rand() * 4);
      return b;
    }
  }
}

/** Sends the UDP junk to `port`, checking every 500 packets that the server still answers. */
async function udpJunk(port: number, rand: () => number): Promise<void> {
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const target: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
  try {
    for (let i = 0; i < 10_000; i++) {
      await sock.send(i % 10 === 9 ? nasty(rand, i) : junk(rand, i), target);
      // Let replies drain now and then so the socket buffers do not just drop everything.
      if (i % 500 === 499) {
        const ok = await queryUdp("127.0.0.1", port, "alive.example.", Type.A);
        assert.equal(ok.additional[0].data, "127.0.0.1");
      }
    }
  } finally {
    sock.close();
  }
}

for (
  const [path, v8flags, ignore] of [
    ["batched", "", batchedMissing !== undefined],
    // Compaction moves objects on every GC, and a GC comes every few thousand
    // allocations: a buffer address kept past its life would show here.
    ["batched", "--stress-compaction,--gc-interval=5000", batchedMissing !== undefined],
    ["portable", "", false],
  ] as const
) {
  Deno.test({
    name: `fuzz (${path} UDP${
      v8flags ? ", V8 GC stress" : ""
    }): 10,000 random and mutated packets, compression loops and absurd counts leave the server answering`,
    ignore,
    fn: () => fuzz(path, v8flags),
  });
}

async function fuzz(path: "batched" | "portable", v8flags: string): Promise<void> {
  const port = await freePort();
  const conf = await writeCorefile(`.:${port} {\n    debug\n    whoami\n}\n`);
  const env: Record<string, string> = { IDETCD_UDP: path };
  if (v8flags) env.DENO_V8_FLAGS = v8flags;
  await using server = await startServer(conf, { env });
  await server.waitForOutput(path === "batched" ? "batched path" : "portable path");
  const rand = prng(20261122);
  await udpJunk(port, rand);
  // Junk over TCP too: bad frames, zero lengths, lengths that lie.
  for (let i = 0; i < 200; i++) {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const body = junk(rand, i);
      const frame = new Uint8Array(body.length + 2);
      const claimed = i % 5 === 0 ? Math.floor(rand() * 65536) : body.length;
      frame[0] = claimed >> 8;
      frame[1] = claimed & 0xff;
      frame.set(body, 2);
      await conn.write(frame);
    } finally {
      conn.close();
    }
  }
  const udp = await queryUdp("127.0.0.1", port, "after.example.", Type.A);
  assert.equal(udp.additional[0].data, "127.0.0.1");
  const tcp = await queryTcp("127.0.0.1", port, "after.example.", Type.A);
  assert.equal(tcp.additional[1].name, "_tcp.after.example.");
  assert.doesNotMatch(server.output(), /error: Uncaught|panic/i);
}
