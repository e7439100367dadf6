/** The UDP client the comparison tests and the bench's Probe share. */

import assert from "node:assert/strict";
import { UdpClient } from "./exchange.ts";
import { freePort } from "./wait.ts";

Deno.test("UdpClient: a server that is not up yet is a null, and the client still works once it is", async () => {
  const port = await freePort();
  const client = new UdpClient("127.0.0.1", port);
  const packet = new Uint8Array(12);
  try {
    // Nobody listens: the kernel's ICMP port unreachable may reach the reader; it keeps reading.
    assert.equal(await client.exchange(packet, { timeoutMs: 100, tries: 2 }), null);
    const server = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port });
    try {
      const echo = (async () => {
        const [query, from] = await server.receive();
        const reply = query.slice();
        reply[2] = 0x80; // QR
        await server.send(reply, from);
      })();
      const reply = await client.exchange(packet, { timeoutMs: 5_000 });
      await echo;
      assert.ok(reply, "no reply once the server was up");
      assert.equal(reply[2], 0x80);
    } finally {
      server.close();
    }
  } finally {
    await client.close();
    await client.close(); // twice is fine
  }
});
