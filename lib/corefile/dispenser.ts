/**
 * The argument dispenser every plugin setup reads its lines with, as
 * Caddy's `caddyfile.Dispenser` in CoreDNS: a cursor over one directive
 * line (name, then arguments), its block's lines as dispensers of their
 * own, and the errors CoreDNS's setups raise through it, each naming the
 * token the cursor is on, so that "after 'X'" says what CoreDNS says.
 *
 * The parser has already split lines and blocks (a {@link Directive}
 * tree), so there is no NextBlock bookkeeping: {@link Dispenser.blockLines}
 * hands out the lines between `{` and `}`.
 *
 * @module
 */

import { argError, CorefileError, type Directive, type Token } from "./types.ts";

/** A cursor over one directive line of one plugin (Caddy's Dispenser after `c.Next()`). */
export class Dispenser {
  /** The plugin whose errors these are ("bind"), as `plugin/NAME:` prints it. */
  readonly plugin: string;
  /** The line being read. */
  readonly line: Directive;
  /** 0 is the name; 1.. the arguments. */
  #cursor = 0;

  /** A dispenser on `line`'s name token. */
  constructor(plugin: string, line: Directive) {
    this.plugin = plugin;
    this.line = line;
  }

  /** The directive or option name (the line's first token). */
  get name(): Token {
    return this.line.name;
  }

  /** The token under the cursor. */
  token(): Token {
    return this.#cursor === 0 ? this.line.name : this.line.args[this.#cursor - 1];
  }

  /** Caddy's Val: the text under the cursor. */
  val(): string {
    return this.token().text;
  }

  /** Caddy's NextArg: moves to the next argument of the line; false (cursor kept) at its end. */
  nextArg(): boolean {
    if (this.#cursor >= this.line.args.length) return false;
    this.#cursor++;
    return true;
  }

  /** Caddy's RemainingArgs: the arguments after the cursor; the cursor ends on the last token. */
  remainingArgs(): Token[] {
    const rest = this.line.args.slice(this.#cursor);
    this.#cursor = this.line.args.length;
    return rest;
  }

  /** Whether the line opens a `{ }` block (an empty one counts). */
  hasBlock(): boolean {
    return this.line.block !== null;
  }

  /** The lines of the block, each as a dispenser on its option name; [] without a block. */
  blockLines(): Dispenser[] {
    return (this.line.block ?? []).map((l) => new Dispenser(this.plugin, l));
  }

  /** Caddy's ArgErr: `Wrong argument count or unexpected line ending after '<token under the cursor>'`. */
  argErr(): CorefileError {
    return argError(this.token(), this.plugin);
  }

  /** Caddy's Err: `message` at `at` (default: the token under the cursor). */
  err(message: string, at: Token = this.token()): CorefileError {
    return new CorefileError(message, at, this.plugin);
  }

  /** CoreDNS's `unknown property 'NAME'` for a block line this plugin has no option for. */
  unknownProperty(): CorefileError {
    return this.err(`unknown property '${this.name.text}'`, this.name);
  }
}

/** One dispenser per directive line of a plugin in a server block (Caddy's `for c.Next()`). */
export function dispensers(plugin: string, directives: readonly Directive[]): Dispenser[] {
  return directives.map((d) => new Dispenser(plugin, d));
}

/**
 * The one line of a plugin that may appear once per server block; a second
 * one is CoreDNS's `this plugin can only be used once per Server Block`.
 */
export function onlyOnce(plugin: string, directives: readonly Directive[]): Dispenser {
  if (directives.length > 1) {
    throw new CorefileError(
      "this plugin can only be used once per Server Block",
      directives[1].name,
      plugin,
    );
  }
  return new Dispenser(plugin, directives[0]);
}
