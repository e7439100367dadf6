/**
 * Junk at the sockets: random and mutated packets must never take the server down.
 */

import assert from "node:assert/strict";
import { queryTcp, queryUdp, startServer, writeCorefile } from "./helpers/process.ts";
import { freePort } from "./helpers/wait.ts";
import { encodeQuery } from "../lib/dns/wire.ts";
import { Type } from "../lib/dns/types.ts";

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

Deno.test("fuzz: 10,000 random and mutated packets leave the server answering", async () => {
  const port = await freePort();
  const conf = await writeCorefile(`.:${port} {\n    whoami\n}\n`);
  await using server = await startServer(conf);
  const rand = prng(20261122);
  const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  const target: Deno.NetAddr = { transport: "udp", hostname: "127.0.0.1", port };
  try {
    for (let i = 0; i < 10_000; i++) {
      await sock.send(junk(rand, i), target);
      // Let replies drain now and then so the socket buffers do not just drop everything.
      if (i % 500 === 499) {
        const ok = await queryUdp("127.0.0.1", port, "alive.example.", Type.A);
        assert.equal(ok.additional[0].data, "127.0.0.1");
      }
    }
  } finally {
    sock.close();
  }
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
});
