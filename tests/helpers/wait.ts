/**
 * Waiting helpers: poll a condition until a deadline instead of sleeping and hoping.
 *
 * @module
 */

/** Options for {@link waitFor}. */
export interface WaitOptions {
  /** Give up after this many milliseconds (default 10 s). */
  timeoutMs?: number;
  /** Poll interval in milliseconds (default 20). */
  intervalMs?: number;
  /** What is awaited, for the timeout message. */
  what?: string;
}

/**
 * Polls `condition` until it returns a truthy value, and returns that value.
 * Throws when the deadline passes; an exception from `condition` aborts at once.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  options: WaitOptions = {},
): Promise<NonNullable<T>> {
  const { timeoutMs = 10_000, intervalMs = 20, what = "condition" } = options;
  const deadline = performance.now() + timeoutMs;
  let last: T | undefined;
  while (true) {
    last = await condition();
    if (last) return last as NonNullable<T>;
    if (performance.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Where {@link freePort} picks: below Linux's ephemeral range (32768-60999). */
const PICK_FROM = 20_000;
const PICK_TO = 32_000;

/**
 * A TCP and UDP port that is free on 127.0.0.1 right now. It is picked at
 * random below the kernel's ephemeral range rather than asked of the kernel
 * (port 0): a port from that range can be taken, between this check and the
 * test's bind, by the source port of any outgoing connection (an etcd client,
 * a query), which made "address already in use" flakes on busy runs.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const pick = PICK_FROM + Math.floor(Math.random() * (PICK_TO - PICK_FROM));
    let tcp: Deno.Listener;
    try {
      tcp = Deno.listen({ hostname: "127.0.0.1", port: pick });
    } catch {
      continue;
    }
    const port = (tcp.addr as Deno.NetAddr).port;
    try {
      const udp = Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port });
      udp.close();
      tcp.close();
      return port;
    } catch {
      tcp.close();
    }
  }
  await Promise.resolve();
  throw new Error("no free port found");
}
