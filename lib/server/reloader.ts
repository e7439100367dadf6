/**
 * The process's reload entry point, set by main.ts and called by the reload
 * plugin (file change) and by SIGUSR1.
 *
 * @module
 */

/** Re-reads the Corefile and swaps configurations; resolves when done (or kept old). */
export type ReloadHandler = (why: string) => Promise<void>;

let handler: ReloadHandler | undefined;

/** Installs the process's reload handler. */
export function setReloadHandler(fn: ReloadHandler | undefined): void {
  handler = fn;
}

/** Asks for a reload; a no-op when nothing is installed (tests, subcommands). */
export function requestReload(why: string): Promise<void> {
  return handler ? handler(why) : Promise.resolve();
}
