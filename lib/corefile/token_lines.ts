/**
 * Which line a token ends on, and whether two tokens share one: the test
 * that decides, in a Corefile, where a directive's arguments stop (Caddy's
 * Dispenser.NextArg). A quoted token may span lines; the next token then
 * continues the line the quote ends on.
 *
 * @module
 */

import type { Token } from "./types.ts";

/** The line a token's last character is on. */
export function tokenEnd(t: Token): number {
  return t.line + (t.lineBreaks ?? 0);
}

/** Whether `b` directly continues the line `a` ends on (same file). */
export function sameLine(a: Token, b: Token): boolean {
  return a.file === b.file && tokenEnd(a) === b.line;
}
