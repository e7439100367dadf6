import assert from "node:assert/strict";
import { waitFor } from "../../../tests/helpers/wait.ts";
import { encodeMessage, encodeQuery } from "../../dns/wire.ts";
import { Type } from "../../dns/types.ts";
import { ExchangeError, formatAddress, MessageIds, UdpChannel } from "./proxy.ts";
import { replyTo, startFakeServer } from "./testkit.ts";
import { decodeMessage } from "../../dns/wire.ts";

const query = (id: number) => encodeQuery(id, "x.example.", Type.A);

Deno.test("proxy: addresses print as Go's JoinHostPort", () => {
  assert.equal(formatAddress({ host: "192.0.2.1", port: 53 }), "192.0.2.1:53");
  assert.equal(formatAddress({ host: "::1", port: 5353 }), "[::1]:5353");
});

Deno.test("proxy: message IDs are 16-bit, varied, and each source draws its own batch", () => {
  const a = new MessageIds();
  const b = new MessageIds();
  const drawn = Array.from({ length: 2_000 }, () => a.next());
  assert.ok(drawn.every((id) => Number.isInteger(id) && id >= 0 && id <= 0xffff));
  // 2,000 draws over 65,536 values: far more than 1,000 distinct unless the source is broken.
  assert.ok(new Set(drawn).size > 1_000, `only ${new Set(drawn).size} distinct IDs`);
  // b starts its own batch; a's draws did not use it up.
  const other = Array.from({ length: 512 }, () => b.next());
  assert.notDeepEqual(other, drawn.slice(0, 512));
});

Deno.test("proxy: one UDP socket carries concurrent queries, matched by ID", async () => {
  const upstream = startFakeServer(async (q) => {
    // Answer in reverse arrival order to prove matching is by ID.
    await new Promise((r) => setTimeout(r, q.question[0].name.length));
    return replyTo(q);
  });
  const channel = new UdpChannel({ host: "127.0.0.1", port: upstream.port }, 10_000);
  try {
    const names = ["a.example.", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.example.", "cc.example."];
    const replies = await Promise.all(
      names.map((n) => channel.exchange((id) => encodeQuery(id, n, Type.A), 2_000)),
    );
    assert.deepEqual(replies.map((r) => decodeMessage(r).question[0].name), names);
    assert.deepEqual(
      [...new Set(upstream.received.map((r) => r.remotePort))],
      [channel.localPort],
      "every query left from the one pooled socket",
    );
  } finally {
    await channel.close();
    await upstream.close();
  }
});

Deno.test("proxy: replies from another address are ignored (no spoofing by source)", async () => {
  const upstream = startFakeServer(() => null);
  const channel = new UdpChannel({ host: "127.0.0.1", port: upstream.port }, 10_000);
  const spoofer = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  try {
    const pending = channel.exchange(query, 400);
    await waitFor(() => upstream.received.length === 1, { what: "query upstream" });
    const sent = upstream.received[0].query;
    await spoofer.send(encodeMessage(replyTo(sent)), {
      transport: "udp",
      hostname: "127.0.0.1",
      port: channel.localPort!,
    });
    await assert.rejects(pending, (err: Error) => {
      assert.ok(err instanceof ExchangeError);
      assert.match(err.message, /^read udp .*->127\.0\.0\.1:\d+: i\/o timeout$/);
      return true;
    });
  } finally {
    spoofer.close();
    await channel.close();
    await upstream.close();
  }
});

Deno.test("proxy: an idle socket is replaced after expire; close fails pending queries", async () => {
  const upstream = startFakeServer((q) =>
    q.question[0].name === "hang.example." ? null : replyTo(q)
  );
  const channel = new UdpChannel({ host: "127.0.0.1", port: upstream.port }, 50);
  try {
    await channel.exchange(query, 2_000);
    const firstPort = channel.localPort;
    await new Promise((r) => setTimeout(r, 80));
    await channel.exchange(query, 2_000);
    assert.notEqual(channel.localPort, firstPort, "a fresh socket after the idle period");
    const hanging = channel.exchange((id) => encodeQuery(id, "hang.example.", Type.A), 5_000);
    await waitFor(() => upstream.received.length === 3, { what: "hanging query upstream" });
    const failed = assert.rejects(hanging, /use of closed network connection/);
    await channel.close();
    await failed;
    await assert.rejects(channel.exchange(query, 100), /use of closed network connection/);
  } finally {
    await channel.close();
    await upstream.close();
  }
});
