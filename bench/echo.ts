/**
 * The ceiling of Deno's datagram API: receives UDP on 127.0.0.1:PORT and
 * sends every datagram straight back with the QR bit set, doing no DNS work.
 * A DNS server in Deno cannot answer faster than this loop.
 *
 * It is written the way lib/server/listen.ts serves UDP (receive in a loop,
 * send without waiting for the previous send), so it measures the same API.
 *
 * Usage: `deno run --allow-net --unstable-net bench/echo.ts PORT`; prints
 * "echo ready" once listening.
 *
 * @module
 */

const port = Number(Deno.args[0]);
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: echo.ts PORT");
  Deno.exit(2);
}
const sock = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port });
console.log("echo ready");
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
while (true) {
  let data: Uint8Array, addr: Deno.Addr;
  try {
    [data, addr] = await sock.receive();
  } catch {
    continue;
  }
  // QR: this is a response (dnsperf discards datagrams that are not).
  if (data.length >= 3) data[2] |= 0x80;
  sock.send(data, addr).catch(() => {});
}
