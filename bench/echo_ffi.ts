/**
 * The ceiling of the batched UDP path: the project's own recvmmsg/sendmmsg
 * loop (lib/server/udp/batch_loop.ts, through Deno FFI) with a handler that
 * sends every datagram straight back with the QR bit set, doing no DNS work.
 * idetcd on `-udp batched` cannot answer faster than this loop; the gap
 * between the two is the DNS work.
 *
 * Usage: `deno run -A bench/echo_ffi.ts PORT`; prints "echo ready" once
 * listening.
 *
 * @module
 */

import { createLogger } from "../lib/log.ts";
import { BatchedUdp } from "../lib/server/udp/batch_loop.ts";

const port = Number(Deno.args[0]);
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: echo_ffi.ts PORT");
  Deno.exit(2);
}
const socket = BatchedUdp.open("127.0.0.1", port, createLogger("echo-ffi"));
console.log("echo ready");
Deno.addSignalListener("SIGTERM", () => {
  socket.close().finally(() => Deno.exit(0));
});
await socket.serve((data) => {
  // The loop copies a reply into its send slot before the handler's call returns,
  // so the receive slot itself can be the reply. QR: dnsperf ignores non-responses.
  if (data.length >= 3) data[2] |= 0x80;
  return data;
});
