/**
 * A Worker for batch_loop_test.ts: opens a batched socket, makes sure its
 * loop has answered a datagram and gone back to `poll`, says "polling" and
 * stays there, so that the test can tear this isolate down while the poll
 * is still running on Deno's blocking pool.
 *
 * @module
 */

import { BatchedUdp } from "../batch_loop.ts";
import { createLogger } from "../../../log.ts";

/** The parts of a Worker's global scope this module uses (the checker's lib is the window's). */
const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<{ batch: number; slot: number }>) => void) | null;
  postMessage(message: string): void;
};

scope.onmessage = async (event) => {
  // A small arena is a malloc'd block, not its own mapping: a late write into
  // it after the isolate is gone would land in memory the allocator reuses.
  const udp = BatchedUdp.open("127.0.0.1", 0, createLogger("test", () => {}), event.data);
  udp.serve((data) => data.slice());
  const client = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 });
  await client.send(new Uint8Array(12), {
    transport: "udp",
    hostname: "127.0.0.1",
    port: udp.localPort,
  });
  await client.receive();
  client.close();
  // The reply went out in this turn; the loop's next step is poll on an empty socket.
  await new Promise((resolve) => setTimeout(resolve, 1));
  scope.postMessage(`polling ${udp.stats.polls}`);
};
