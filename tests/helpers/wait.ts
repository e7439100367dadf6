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

/** A TCP and UDP port that is free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const tcp = Deno.listen({ hostname: "127.0.0.1", port: 0 });
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
