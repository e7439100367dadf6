/**
 * The argument dispenser every plugin setup reads its lines with, as
 * Caddy's `caddyfile.Dispenser` in CoreDNS: a cursor over one directive
 * line (name, then arguments), its block's lines as dispensers of their
 * own, and the errors CoreDNS's setups raise through it, each naming the
 * token the cursor is on, so that "after 'X'" says what CoreDNS says.
 *
 * The parser has already split lines and blocks (a {@link Directive}
 * tree), so there is no NextBlock bookkeeping: {@link Dispenser.blockLines}
 * hands out the lines between `{` and `}`. A setup whose CoreDNS reads a
 * block as one token stream, so that what an option leaves unread on its
 * line is taken for the next option (etcd's `path /a b` is `unknown
 * property 'b'`), reads it with {@link TokenStream}, Caddy's cursor over the
 * flat tokens.
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

  /**
   * The line's arguments, the cursor left where it is (so that an argErr()
   * after a count check names the option, as these setups always have).
   */
  get args(): readonly Token[] {
    return this.line.args;
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

/** Line breaks inside a (quoted) token, which Caddy adds to its line when comparing lines. */
function lineBreaks(token: Token): number {
  if (token.lineBreaks !== undefined) return token.lineBreaks;
  let n = 0;
  for (const ch of token.text) if (ch === "\n") n++;
  return n;
}

/** The directive's tokens as Caddy holds them: `{` on the opening line, `}` on a line of its own. */
function flatten(directive: Directive, out: Token[] = []): Token[] {
  out.push(directive.name, ...directive.args);
  if (directive.block !== null) {
    const opener = out[out.length - 1];
    out.push({ text: "{", file: opener.file, line: opener.line + lineBreaks(opener) });
    for (const line of directive.block) flatten(line, out);
    const last = out[out.length - 1];
    out.push({ text: "}", file: last.file, line: last.line + lineBreaks(last) + 1 });
  }
  return out;
}

/**
 * Caddy's Dispenser over one directive's flat token stream (braces
 * restored), for setups that must read stray tokens as CoreDNS's do:
 * NextArg does not stop at a line's end inside a block by itself, so a
 * token an option leaves unread becomes the next NextBlock's option.
 */
export class TokenStream {
  /** The plugin whose errors these are, as `plugin/NAME:` prints it. */
  readonly plugin: string;
  readonly #tokens: Token[];
  #cursor = -1;
  #nesting = 0;

  /** A stream before `directive`'s name (call next() to stand on it). */
  constructor(plugin: string, directive: Directive) {
    this.plugin = plugin;
    this.#tokens = flatten(directive);
  }

  /** The current token (the last one when past the end). */
  token(): Token {
    return this.#tokens[Math.min(Math.max(this.#cursor, 0), this.#tokens.length - 1)];
  }

  /** Caddy's Val: the current token's text; "" before the first token. */
  val(): string {
    return this.#cursor < 0 || this.#cursor >= this.#tokens.length
      ? ""
      : this.#tokens[this.#cursor].text;
  }

  /** Caddy's Next: moves to the next token, on any line; false at the end. */
  next(): boolean {
    if (this.#cursor < this.#tokens.length - 1) {
      this.#cursor++;
      return true;
    }
    return false;
  }

  /** Caddy's NextArg: the next token if it is on the same line as the current one. */
  nextArg(): boolean {
    if (this.#cursor < 0) {
      this.#cursor++;
      return true;
    }
    if (this.#cursor >= this.#tokens.length - 1) return false;
    const here = this.#tokens[this.#cursor];
    const there = this.#tokens[this.#cursor + 1];
    if (here.file === there.file && here.line + lineBreaks(here) === there.line) {
      this.#cursor++;
      return true;
    }
    return false;
  }

  /** Caddy's RemainingArgs: the rest of the line, stopping before a `{`. */
  remainingArgs(): Token[] {
    const args: Token[] = [];
    while (this.nextArg()) {
      if (this.val() === "{") {
        this.#cursor--;
        break;
      }
      args.push(this.token());
    }
    return args;
  }

  /** Caddy's NextBlock: enters or walks a `{ }` block; false at its end (or when there is none). */
  nextBlock(): boolean {
    if (this.#nesting > 0) {
      this.next();
      if (this.val() === "}") {
        this.#nesting--;
        return false;
      }
      return true;
    }
    if (!this.nextArg()) return false;
    if (this.val() !== "{") {
      this.#cursor--;
      return false;
    }
    this.next();
    if (this.val() === "}") return false;
    this.#nesting++;
    return true;
  }

  /** Caddy's ArgErr at the current token. */
  argErr(): CorefileError {
    return argError(this.token(), this.plugin);
  }

  /** Caddy's Err: `message` at the current token. */
  err(message: string): CorefileError {
    return new CorefileError(message, this.token(), this.plugin);
  }
}
