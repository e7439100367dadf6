/**
 * The process's reload entry point and what the reload plugin needs to know
 * about the Corefile. main.ts installs the handler, the Corefile reader and
 * the blocks it starts; the reload plugin (file change) and SIGUSR1 call
 * {@link requestReload}.
 *
 * @module
 */

import type { ServerBlock } from "../corefile/types.ts";

/**
 * Re-reads the Corefile and swaps configurations. Resolves true when the new
 * configuration runs, false when the old one was kept (the handler logs why).
 */
export type ReloadHandler = (why: string) => Promise<boolean>;

/** Reads and parses the Corefile as the process loads it (imports expanded); throws with the reason. */
export type CorefileReader = () => Promise<ServerBlock[]>;

let handler: ReloadHandler | undefined;
let reader: CorefileReader | undefined;
let starting: ServerBlock[] | undefined;

/** Installs the process's reload handler. */
export function setReloadHandler(fn: ReloadHandler | undefined): void {
  handler = fn;
}

/** Asks for a reload; resolves false when nothing is installed (tests, subcommands) or it failed. */
export function requestReload(why: string): Promise<boolean> {
  return handler ? handler(why) : Promise.resolve(false);
}

/** Installs how the Corefile is read again (main.ts; stdin Corefiles return the text read at start). */
export function setCorefileReader(fn: CorefileReader | undefined): void {
  reader = fn;
}

/** Reads the Corefile afresh; throws when no reader is installed or the file cannot be read or parsed. */
export function readCorefile(): Promise<ServerBlock[]> {
  if (!reader) return Promise.reject(new Error("no Corefile reader installed"));
  return reader();
}

/**
 * Records the blocks of the configuration about to be started (main.ts,
 * before Instance.start/reload), so the reload plugin's startup hook hashes
 * exactly what runs, not a file that may have changed since.
 */
export function setStartingCorefile(blocks: ServerBlock[] | undefined): void {
  starting = blocks;
}

/** The blocks last given to {@link setStartingCorefile}. */
export function startingCorefile(): ServerBlock[] | undefined {
  return starting;
}

/**
 * Hex SHA-512 of parsed server blocks. Imports are already expanded by the
 * parser, so imported files count; as in CoreDNS (which hashes the JSON of
 * the parsed blocks), comments and spacing that move no token do not.
 */
export async function corefileDigest(blocks: ServerBlock[]): Promise<string> {
  const bytes = new TextEncoder().encode(JSON.stringify(blocks));
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}
