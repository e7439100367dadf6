/**
 * Cleanup for the benchmark: every process, socket, client and temp dir it
 * creates is registered in a {@link Scope}, and scopes are disposed in reverse
 * order at the end of a section, on an error, and on SIGINT/SIGTERM.
 *
 * @module
 */

type Disposer = () => void | Promise<void>;

/** Scopes not yet disposed, oldest first (the signal handler disposes them all). */
const live: Scope[] = [];

/** A stack of clean-up actions, run in reverse order when the scope is disposed. */
export class Scope implements AsyncDisposable {
  #actions: Disposer[] = [];
  #disposed = false;

  constructor() {
    live.push(this);
  }

  /** Registers `action` to run at disposal (last registered runs first). */
  defer(action: Disposer): void {
    if (this.#disposed) throw new Error("scope already disposed");
    this.#actions.push(action);
  }

  /** Runs every action (errors are reported, never thrown: clean-up must go on). */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const index = live.indexOf(this);
    if (index >= 0) live.splice(index, 1);
    while (this.#actions.length > 0) {
      const action = this.#actions.pop()!;
      try {
        await action();
      } catch (err) {
        console.error(`bench: clean-up step failed: ${(err as Error)?.message ?? err}`);
      }
    }
  }
}

/** Disposes every live scope, newest first. */
export async function disposeAll(): Promise<void> {
  while (live.length > 0) await live[live.length - 1][Symbol.asyncDispose]();
}

/**
 * Makes SIGINT and SIGTERM clean up before exiting (130/143); returns a
 * function that removes the handlers again.
 */
export function cleanUpOnSignals(): () => void {
  let stopping = false;
  const handlers: [Deno.Signal, () => void][] = (["SIGINT", "SIGTERM"] as const).map((sig) => [
    sig,
    () => {
      if (stopping) return;
      stopping = true;
      console.error(`bench: ${sig}, cleaning up`);
      // A second signal during clean-up is ignored; a hung step is cut short.
      const deadline = setTimeout(() => Deno.exit(sig === "SIGINT" ? 130 : 143), 20_000);
      disposeAll().finally(() => {
        clearTimeout(deadline);
        Deno.exit(sig === "SIGINT" ? 130 : 143);
      });
    },
  ]);
  for (const [sig, handler] of handlers) Deno.addSignalListener(sig, handler);
  return () => {
    for (const [sig, handler] of handlers) Deno.removeSignalListener(sig, handler);
  };
}
